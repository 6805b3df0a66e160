"""The spec registry: every spec file in a directory, valid or not.

One invalid spec must never take the others down: it is kept aside with its
error lines so the code location, the CLI and the UI can all report it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec, load_spec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class RegistryScan:
    valid: list[LoadedSpec] = field(default_factory=list)
    invalid: dict[Path, list[str]] = field(default_factory=dict)


def spec_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SPEC_SUFFIXES)


def scan_specs(directory: Path) -> RegistryScan:
    scan = RegistryScan()
    owner: dict[str, Path] = {}
    for path in spec_files(directory):
        try:
            loaded = load_spec(path)
        except SpecError as err:
            scan.invalid[path] = err.lines
            continue
        pid = loaded.spec.pipeline_id
        if pid in owner:
            scan.invalid[path] = [
                f"{path}:1: pipeline_id: '{pid}' is already defined by {owner[pid].name}"
            ]
            continue
        owner[pid] = path
        scan.valid.append(loaded)
    return scan
