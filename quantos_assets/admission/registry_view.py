"""The spec registry as admission sees it: owners and derived names of registered pipelines.

The registry module holds the rules of who may register what (spec_registry.py); the same
functions run here, at admission, and under the registry's lock when the spec is written, so
a race between two teams ends in one refusal, never in a take-over. Scans are cached by the
registry until a file changes (the gateway asks on every request, the sensors every tick),
and a spec is parsed only when it is asked for.
"""

from __future__ import annotations

from pathlib import Path

from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec_registry import (
    name_conflicts,
    ownership_refusal,
    registered_owner,
    registered_spec,
    scan_specs,
)


class DirectoryRegistry:
    """The registry folder (`specs/` locally) behind the `Registry` protocol of the rules."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, pipeline_id: str) -> LoadedSpec | None:
        return registered_spec(self.directory, pipeline_id)

    def owner(self, pipeline_id: str) -> str | None:
        return registered_owner(self.directory, pipeline_id)

    def ownership(self, spec: DagSpec, team: str, admin: bool) -> str | None:
        refusal = ownership_refusal(
            self.directory, LoadedSpec(spec, None, ""), team=team, admin=admin
        )
        return str(refusal) if refusal is not None else None

    def pipelines(self) -> frozenset[str]:
        """Valid specs' ids and every id the index ever registered (a spec invalid today
        still owns its namespace's tables)."""
        scan = scan_specs(self.directory)
        return frozenset(e.pipeline_id for e in scan.entries) | frozenset(scan.index.pipelines)

    def conflicts(self, spec: DagSpec) -> list[str]:
        return [
            f"pipeline '{spec.pipeline_id}': {line}"
            for line in name_conflicts(spec, self.directory)
        ]
