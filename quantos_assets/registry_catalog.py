"""The registry's catalog: what a scan needs of each spec file, kept across processes.

Every code-server process (one per team) scans the whole registry when it starts, and
reading and checking a spec costs about 1.5 ms: seconds per process at thousands of
pipelines. `<specs>/.registry/catalog.json` keeps, per file version (mtime, ctime, size,
inode), what the scan derives from it: the error lines, or the pipeline_id, the team its
labels name and the names it makes. A record is used only for the exact file version it was
made from, under the exact rules that made it (spec_rules/version.py), for the folder as
named (error lines name their file): the catalog is only a cache, and one that is missing,
unreadable, corrupt, of another format, other rules or another folder is ignored and
rebuilt, never an error.

Written like the index beside it (a temporary file renamed over it, 0600), so concurrent
scanners read one whole catalog or another; the last writer wins, which is safe since every
record is checked against its file's stamp. A folder that cannot be written is scanned all
the same. Whoever can write `.registry/` can already rewrite the index (the owners): the
catalog adds nothing to trust.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from quantos_assets.registry_index import INDEX_DIR
from quantos_assets.spec.derived_names import Namespace
from resources.atomic_file import write_atomically

CATALOG_FILE = "catalog.json"
log = logging.getLogger("quantos.registry")

# A file version: (mtime_ns, ctime_ns, size, inode). ctime too: a chmod that makes an unreadable
# file readable changes nothing else, and its record would say "cannot read" for ever.
Stamp = tuple[int, int, int, int]


class SpecRecord(BaseModel):
    """One version of one spec file as a scan needs it, without its model: its error lines,
    or its pipeline, the team its labels name and the names it makes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stamp: Stamp
    errors: tuple[str, ...] = ()  # invalid: every problem, one line each
    pipeline_id: str | None = None  # valid: ...
    team: str | None = None
    # (namespace, name, the spec field that makes it): each name once, with its first field
    names: tuple[tuple[Namespace, str, str], ...] = ()

    @model_validator(mode="after")
    def _valid_or_invalid(self) -> SpecRecord:
        if (self.pipeline_id is None) == (not self.errors):
            raise ValueError("a record has either a pipeline_id or error lines")
        return self


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    rules: str
    directory: str
    files: dict[str, SpecRecord]


def catalog_path(specs_dir: Path) -> Path:
    return specs_dir / INDEX_DIR / CATALOG_FILE


def read_catalog(specs_dir: Path, rules: str) -> dict[str, SpecRecord]:
    """File name -> record, made under `rules` for this folder; empty when there is no
    usable catalog."""
    path = catalog_path(specs_dir)
    try:
        catalog = _CatalogFile.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValidationError) as err:
        log.info("%s: not used, rebuilt (%s)", path, str(err).splitlines()[0])
        return {}
    if catalog.rules != rules or catalog.directory != str(specs_dir):
        return {}
    return catalog.files


def write_catalog(specs_dir: Path, rules: str, records: Mapping[str, SpecRecord]) -> bool:
    """Replace the catalog with these records; False when the folder cannot be written."""
    catalog = _CatalogFile(rules=rules, directory=str(specs_dir), files=dict(records))
    try:
        write_atomically(
            catalog_path(specs_dir),
            catalog.model_dump_json(exclude_defaults=True).encode(),
            dir_mode=0o700,
        )
    except OSError as err:
        log.debug("%s: not written (%s)", catalog_path(specs_dir), err)
        return False
    return True
