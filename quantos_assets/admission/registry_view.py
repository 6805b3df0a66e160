"""The spec registry as admission sees it: owners and derived names of registered pipelines.

Scanning the registry validates every spec file, so the scan is kept until a file changes
(the gateway asks on every request; the sensors on every tick).
"""
from __future__ import annotations

import threading
from pathlib import Path

from quantos_assets.gateway.teams import pipeline_team
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec

_Stamp = tuple[tuple[str, int], ...]
_CACHE: dict[Path, tuple[_Stamp, dict[str, LoadedSpec]]] = {}
_LOCK = threading.Lock()


def registered_specs(directory: Path) -> dict[str, LoadedSpec]:
    """The registry's valid specs by pipeline_id, re-scanned only when a file changed."""
    from quantos_assets.spec_registry import scan_specs, spec_files

    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in spec_files(directory))
    with _LOCK:
        cached = _CACHE.get(directory)
    if cached is None or cached[0] != stamp:
        cached = (stamp, {s.spec.pipeline_id: s for s in scan_specs(directory).valid})
        with _LOCK:
            _CACHE[directory] = cached
    return cached[1]


class DirectoryRegistry:
    """The registry folder (`specs/` locally) behind the `Registry` protocol of the rules."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, pipeline_id: str) -> LoadedSpec | None:
        return registered_specs(self.directory).get(pipeline_id)

    def owner(self, pipeline_id: str) -> str | None:
        registered = self.get(pipeline_id)
        return pipeline_team(registered.spec.labels) if registered is not None else None

    def conflicts(self, spec: DagSpec) -> list[str]:
        return []
