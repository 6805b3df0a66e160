"""What a warm run worker loaded, so a worker started before a change is never used after it.

A worker imports the code location when it starts, before it is given a run; if a spec,
a Python module, a policy or the dbt manifest changes in between (a spec registered by the
gateway, an edit under `dagster dev`), the worker holds the old code. The launcher
compares this fingerprint at spawn and at hand-over and discards a worker that differs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from quantos_assets.registry_catalog import CATALOG_FILE
from quantos_assets.registry_index import INDEX_DIR

# What the code location is built from (code, specs, policies, dbt's manifest).
_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".sql"}
# Not read by the code location, or too big to walk at every launch.
_SKIP_DIRS = {
    ".git",
    ".venv",
    ".quantos",
    "__pycache__",
    "node_modules",
    "tests",
    "bench",
    "docs",
    "logs",
    "dbt_packages",
    ".ruff_cache",
    ".mypy_cache",
    ".pytest_cache",
    ".hypothesis",
}


def _walk(root: Path, skip: frozenset[str] = frozenset()) -> list[tuple[str, int, int]]:
    seen = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if d not in _SKIP_DIRS
            and os.path.join(folder, d) not in skip
            and not (d == "target" and folder.endswith("dbt_project"))
            # replaced spec versions (specs/.registry/history): kept for people, never loaded
            and not (d == "history" and folder.endswith(".registry"))
        ]
        # the registry's catalog is derived from the specs (rewritten by any process that
        # scans them): not an input, or a scan would discard every warm worker
        derived = CATALOG_FILE if os.path.basename(folder) == INDEX_DIR else None
        for name in files:
            path = os.path.join(folder, name)
            if Path(name).suffix in _SUFFIXES and name != derived and path not in skip:
                try:
                    st = os.stat(path)
                except OSError:  # removed while walking: the next launch sees it
                    continue
                seen.append((path, st.st_mtime_ns, st.st_size))
    return seen


def code_fingerprint(
    working_directory: Path, extra: list[Path], skip: list[Path] | None = None
) -> str:
    """sha256 over (path, mtime, size) of the code location's sources and `extra` files/folders;
    `skip`: folders and files under the working directory left out (fingerprinted apart)."""
    left_out = frozenset(str(p.absolute()) for p in skip or [])
    entries = _walk(working_directory.absolute(), left_out)
    for path in extra:
        if path.is_dir():
            if not path.resolve().is_relative_to(working_directory.resolve()):
                entries += _walk(path)
        elif path.exists():
            st = path.stat()
            entries.append((str(path), st.st_mtime_ns, st.st_size))
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(repr(entry).encode())
    return digest.hexdigest()


def location_fingerprints(workdir: Path) -> tuple[str, str]:
    """(code, data): of the modules and policies under `workdir`, and of the specs and the dbt
    manifest. A change of data alone is what a code location can rebuild in place (the warm
    run workers, the in-place code servers); a change of code needs a new interpreter."""
    from resources.profile import active_profile

    manifest = workdir / "dbt_project" / "target" / "manifest.json"
    specs = active_profile().specs_dir
    return (
        code_fingerprint(workdir, [], skip=[specs, manifest]),
        code_fingerprint(specs, [manifest]),
    )
