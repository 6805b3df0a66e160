"""The spec registry's own records: who owns each pipeline, and every version it replaced.

Spec files say what a pipeline is; they cannot say who registered it first (an unlabelled
spec names no team) nor what it was before a replacement. Both live beside them in
`<specs>/.registry/` (hidden: the scanner reads only the folder's own *.yaml/*.json):
`index.json` (pipeline -> first registering team, file, registration order, sha256) and
`history/<pipeline_id>/<n>-<sha256><suffix>` (the bytes of version n, kept when version
n+1 replaced it). Writers hold the registry lock (`<specs>/.registry.lock`); every file is
written to a temporary name and renamed, mode 0600 (ownership is a decision).
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from resources.atomic_file import write_atomically

INDEX_DIR = ".registry"
LOCK_FILE = ".registry.lock"


class RegistryIndexError(ValueError):
    """index.json cannot be read: one line naming the file. Registration stops (writing a
    fresh index would forget every owner); loading goes on in file order."""


class IndexEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str | None = Field(
        description="the team that registered the pipeline first (None: unknown)"
    )
    file: str = Field(description="the spec file's name in the specs folder")
    seq: int = Field(
        ge=1, description="registration order: at load the earlier of two colliding specs wins"
    )
    sha256: str = Field(description="sha256 of the file as registered")
    versions: int = Field(
        default=1, ge=1, description="versions registered; history keeps all but the current"
    )


class RegistryIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    next_seq: int = Field(default=1, ge=1)
    pipelines: dict[str, IndexEntry] = Field(default_factory=dict)


def index_path(specs_dir: Path) -> Path:
    return specs_dir / INDEX_DIR / "index.json"


def read_index(specs_dir: Path) -> RegistryIndex:
    """The index; empty when the folder has none yet (specs placed by hand, an old registry)."""
    path = index_path(specs_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return RegistryIndex()
    except OSError as err:
        raise RegistryIndexError(
            f"{path}: cannot read the registry index ({err.strerror or err})"
        ) from None
    try:
        return RegistryIndex.model_validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise RegistryIndexError(
            f"{path}: not a registry index ({where}: {first['msg']})"
        ) from None


def write_index(specs_dir: Path, index: RegistryIndex) -> None:
    """Replace index.json atomically; the caller holds `registry_lock`."""
    _write_private(index_path(specs_dir), index.model_dump_json(indent=2).encode())


def keep_version(specs_dir: Path, pipeline_id: str, number: int, raw: bytes, suffix: str) -> Path:
    """Keep the bytes of a version about to be replaced; the caller holds `registry_lock`."""
    digest = hashlib.sha256(raw).hexdigest()
    path = specs_dir / INDEX_DIR / "history" / pipeline_id / f"{number}-{digest}{suffix}"
    _write_private(path, raw)
    return path


def write_spec_file(target: Path, data: bytes) -> None:
    """A registered spec file, replaced atomically (never half-written), mode 0600."""
    _write_private(target, data)


@contextmanager
def registry_lock(specs_dir: Path) -> Iterator[None]:
    """Writers of one specs folder, across gateway workers and processes, one at a time."""
    specs_dir.mkdir(parents=True, exist_ok=True)
    with open(specs_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_private(path: Path, data: bytes) -> None:
    write_atomically(path, data, dir_mode=0o700)
