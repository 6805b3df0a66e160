"""Which pipeline and team a run belongs to, whichever way it was launched.

A run of a pipeline's own job carries the job tag `quantos/pipeline_id`, and a submission's
run `quantos/team`. Runs launched from the UI's asset graph, asset backfills and `dagster
asset materialize` run Dagster's implicit asset job (`__ASSET_JOB`) with neither, so metrics
and log lines would say `pipeline="__ASSET_JOB"`, `team=""`. Every asset of a pipeline is
keyed `[pipeline_id, ...]` (its group is the pipeline_id) and every step `{pipeline_id}__{node}`,
so the run's asset selection (or its steps) names the pipeline, and the pipeline's spec names
the team (`labels.team`, else `labels.owner`, as `runtime_run_tags` reads them).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from dagster import DagsterRun

from resources.run_tag_keys import TAG_PIPELINE, TAG_TEAM

# Dagster's implicit job of every asset in a repository (UI "Materialize", backfills).
IMPLICIT_JOB = "__ASSET_JOB"


def run_pipeline(run: DagsterRun) -> str:
    """The pipeline_id (several, comma-separated, for a selection across pipelines)."""
    tagged = run.tags.get(TAG_PIPELINE)
    if tagged:
        return tagged
    if not run.job_name.startswith(IMPLICIT_JOB):
        return run.job_name
    owners = {key.path[0] for key in run.asset_selection or () if len(key.path) > 1}
    owners |= {
        check.asset_key.path[0]
        for check in run.asset_check_selection or ()
        if len(check.asset_key.path) > 1
    }
    if not owners:
        owners = {step.split("__", 1)[0] for step in run.step_keys_to_execute or () if "__" in step}
    return ",".join(sorted(owners)) or run.job_name


def run_team(run: DagsterRun, pipeline: str, spec_teams: Mapping[str, str]) -> str:
    """The submission's team, else the team the pipeline's spec names ("" if none)."""
    tagged = run.tags.get(TAG_TEAM)
    if tagged:
        return tagged
    return ",".join(sorted({spec_teams[p] for p in pipeline.split(",") if spec_teams.get(p)}))


class SpecTeams:
    """pipeline_id -> team of its spec in the registry, re-read only when a spec file changed
    (the gateway adds specs while the exporter runs)."""

    def __init__(self, specs_dir: Path | None) -> None:
        self.specs_dir = specs_dir
        self._lock = threading.Lock()
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._teams: dict[str, str] = {}

    def current(self) -> dict[str, str]:
        if self.specs_dir is None or not self.specs_dir.is_dir():
            return {}
        from quantos_assets.spec_registry import scan_specs, spec_files

        files = spec_files(self.specs_dir)
        seen = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        with self._lock:
            if seen != self._seen:
                teams = {
                    entry.pipeline_id: entry.team
                    for entry in scan_specs(self.specs_dir).entries
                    if entry.team  # the labels' team, else owner: no spec parsed
                }
                self._teams, self._seen = teams, seen
            return dict(self._teams)
