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


@dataclass(frozen=True)
class Registration:
    path: Path
    changed: bool  # False: the registry already held this exact spec


def register_spec(directory: Path, loaded: LoadedSpec) -> Registration:
    """Put a submitted spec in the registry, replacing the file that holds its pipeline_id.

    Specs are compared as validated models, so formatting differences do not count as a
    change (and do not force a code-location reload). The file is replaced atomically and
    keeps its name (JSON is valid YAML), so no two files ever define one pipeline_id.
    Writers serialize on a lock file: the gateway may run several workers.
    """
    import fcntl
    import json
    import os
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    pipeline_id = loaded.spec.pipeline_id
    wanted = loaded.spec.model_dump(mode="json", by_alias=True)
    with open(directory / ".registry.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        target = directory / f"{pipeline_id}.json"
        for path in spec_files(directory):
            try:
                existing = load_spec(path)
            except SpecError:
                continue
            if existing.spec.pipeline_id == pipeline_id:
                if existing.spec.model_dump(mode="json", by_alias=True) == wanted:
                    return Registration(path, changed=False)
                target = path
                break
        fd, tmp = tempfile.mkstemp(prefix=f".{pipeline_id}-", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w") as out:
            json.dump(wanted, out, indent=2)
        os.replace(tmp, target)
        return Registration(target, changed=True)
