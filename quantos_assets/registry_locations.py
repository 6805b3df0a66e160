"""The registry seen by code location: which location serves each registered pipeline.

The one answer the code locations, the gateway, the client and the Kafka sensors share: a
pipeline's location follows from its owning team (its spec's `labels.team`, else the team
that registered it first) and the teams file's location plan (tenancy/locations.py). Read
from a registry scan, which is cached and incremental, so asking per request is cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from quantos_assets.spec_registry import RegistryScan, scan_specs
from quantos_assets.tenancy.locations import PLATFORM_LOCATION, LocationPlan
from quantos_assets.tenancy.teams import TeamsFile

_LAST: dict[Path, RegistryLocations] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Registered:
    """A valid registry file, as far as placing it needs (no other field of the spec)."""

    path: Path
    pipeline_id: str
    team: str | None


@dataclass(frozen=True)
class RegistryLocations:
    plan: LocationPlan
    scan: RegistryScan

    @classmethod
    def read(cls, specs_dir: Path, teams: TeamsFile) -> RegistryLocations:
        """Raises TeamsFileError when the teams file's locations collide. The answer is
        reused while neither the registry nor the plan changed: sensors ask per message."""
        plan, scan = LocationPlan.of(teams), scan_specs(specs_dir)
        with _LOCK:
            cached = _LAST.get(specs_dir)
            if cached is not None and cached.scan is scan and cached.plan == plan:
                return cached
            fresh = cls(plan, scan)
            _LAST[specs_dir] = fresh
            return fresh

    def _registered(self) -> Iterator[Registered]:
        """From the scan's entries: no spec is parsed to place it."""
        index = self.scan.index.pipelines
        for item in self.scan.entries:
            entry = index.get(item.pipeline_id)
            team = item.team or (entry.team if entry is not None else None)
            yield Registered(item.path, item.pipeline_id, team)

    @cached_property
    def _by_pipeline(self) -> dict[str, tuple[Registered, str]]:
        return {
            r.pipeline_id: (r, self.plan.location_of(r.pipeline_id, r.team))
            for r in self._registered()
        }

    @cached_property
    def _by_ref(self) -> dict[str, str]:
        """What a Kafka `spec_ref` may say (the file's name or stem, or the pipeline_id) ->
        the pipeline_id; a pipeline_id wins over another file's name."""
        refs: dict[str, str] = {}
        for r, _ in self._by_pipeline.values():
            refs[r.path.name] = r.pipeline_id
            refs[r.path.stem] = r.pipeline_id
        refs.update({pid: pid for pid in self._by_pipeline})
        return refs

    def location_of(self, pipeline_id: str) -> str | None:
        """The location of a registered pipeline; None for one the registry does not hold."""
        found = self._by_pipeline.get(pipeline_id)
        return found[1] if found is not None else None

    def location_of_ref(self, ref: str) -> str | None:
        pid = self._by_ref.get(ref)
        return self.location_of(pid) if pid is not None else None

    def pipelines_in(self, location: str) -> list[str]:
        """Its pipeline ids, in registry file order."""
        return [pid for pid, (_, where) in self._by_pipeline.items() if where == location]

    def counts(self) -> dict[str, int]:
        """Pipelines per location, every location of the plan listed."""
        counts = dict.fromkeys(self.plan.names(), 0)
        for _, where in self._by_pipeline.values():
            counts[where] = counts.get(where, 0) + 1
        return counts

    def used(self) -> list[str]:
        """The platform's location and every one serving a registered pipeline, plan order."""
        counts = self.counts()
        return [n for n in self.plan.names() if n == PLATFORM_LOCATION or counts.get(n)]

    def invalid_in(self, location: str) -> dict[Path, list[str]]:
        """The invalid files a location reports: those of a pipeline the index places there
        (a registered pipeline whose new version broke); every other one the platform's."""
        by_file = {e.file: pid for pid, e in self.scan.index.pipelines.items()}
        out: dict[Path, list[str]] = {}
        for path, lines in self.scan.invalid.items():
            pid = by_file.get(path.name)
            entry = self.scan.index.pipelines.get(pid) if pid is not None else None
            where = (
                self.plan.location_of(pid, entry.team)
                if pid is not None and entry is not None
                else PLATFORM_LOCATION
            )
            if where == location:
                out[path] = lines
        return out
