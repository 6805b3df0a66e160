"""Seed 003's scheduled jobs, fired by Dagster: the sensor reads the gateway's job table.

The gateway only records what to run and when (quantos_assets/stores/job_store.py);
this sensor turns every due fire into a run request, so the daemon remains the one
scheduler. A due fire is the same for a cron job and a calendar job (once per session of an
exchange at a market-relative time): stores/job_timing.py computes it, from the spec
schedules' own fire table for a calendar. The cursor holds each job's last fired time
and is committed by Dagster together with the run requests; the run key `job@fire-time`
makes a repeated tick a no-op. A fire missed while the daemon was down runs once (latest only).

Each firing is admitted by the same policy as a submission, as of the firing: the team
must still own the pipeline and hold the scopes it asks for, and the run counts against
the team's quotas. A firing over a quota waits (the cursor does not move past it; the job
and the tick say why) and runs once the team is under its limits; a refused one is skipped and noted
on the job. (Firings are not written to the audit trail: its key is the gateway's and the gates',
not the code location's; a firing's record is its run, tagged with the job and team.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import RUN_KEY_TAG

from quantos_assets.admission.policy import admit
from quantos_assets.admission.registry_view import DirectoryRegistry
from quantos_assets.admission.request import Action, AdmissionRequest, Caller
from quantos_assets.asset_job_launch import asset_job_launch
from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.derived_names import GATEWAY_JOBS_SENSOR
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec.models import DagSpec, RuntimeParams
from quantos_assets.stores.job_store import JobStore, ScheduledJob
from quantos_assets.stores.job_timing import latest_due_fire
from quantos_assets.tenancy.teams import TeamsFile, TeamsFileError, load_teams
from resources.profile import Cluster, Profile
from resources.run_tag_keys import TAG_JOB, TAG_SPEC_SHA256, TAG_TEAM
from sensors.run_usage import InstanceUsage, gateway_store

_JOBS: dict[str, JobStore] = {}


def _jobs(url: str) -> JobStore:
    """The gateway's job table (one store per URL and process)."""
    if url not in _JOBS:
        _JOBS[url] = JobStore(gateway_store(url).engine)
    return _JOBS[url]


def fire_stamp(fired_at: float) -> str:
    return datetime.fromtimestamp(fired_at, UTC).strftime("%Y%m%dT%H%M%SZ")


def fire_key(job: ScheduledJob, fired_at: float) -> str:
    """A firing's run key: the job and its fire time, the same whichever location fires it."""
    return f"{job.id}@{fire_stamp(fired_at)}"


def fire_params(job: ScheduledJob, fired_at: float) -> RuntimeParams:
    """The job's runtime params with this firing's submission id (job id + fire time)."""
    return load_runtime_params(
        {**job.runtime_params, "submission_id": f"{job.id}.{fire_stamp(fired_at)}"},
        name=f"job {job.id} runtime_params",
    )


def fire_request(job: ScheduledJob, spec: DagSpec, fired_at: float, cluster: Cluster) -> RunRequest:
    """`cluster`: the pipeline's (`PipelineDefs.cluster`); on pods the run carries the
    job's per-step Kubernetes config."""
    params = fire_params(job, fired_at)
    tags = {
        **runtime_run_tags(params),
        TAG_TEAM: job.team,
        TAG_JOB: job.id,
        TAG_SPEC_SHA256: job.spec_sha256,
    }
    keys = None
    if job.nodes:
        by_id = {n.id: n for n in spec.nodes}
        keys = [
            [spec.pipeline_id, out]
            for n in job.nodes
            if n in by_id
            for out in (by_id[n].outs or [n])
        ]
    run_config = None
    if cluster.pods:
        from quantos_assets.k8s.step_config import submission_run_config

        run_config = submission_run_config(spec, params, cluster)
    from dagster import AssetKey

    if asset_job_launch():  # prototype: the pipeline's assets and tags on the asset job
        from quantos_assets.asset_job_launch import launch_asset_keys
        from quantos_assets.run_tags import spec_run_tags

        keys = keys or launch_asset_keys(spec)
        tags = {**spec_run_tags(spec), **tags}
    return RunRequest(
        run_key=fire_key(job, fired_at),
        job_name=spec.pipeline_id,
        tags=tags,
        asset_selection=[AssetKey(k) for k in keys] if keys else None,
        run_config=run_config or {},
    )


@dataclass
class _Tick:
    """What one evaluation decided: requests, and lines saying why others did not fire."""

    requests: list[RunRequest]
    waiting: list[str]
    problems: list[str]


def evaluate_jobs(
    profile: Profile,
    teams: TeamsFile,
    runnable: dict[str, PipelineDefs],
    usage: InstanceUsage,
    cursor: dict[str, float],
    now: float,
    own: frozenset[str] | None = None,
) -> _Tick:
    """One tick over every active job; `cursor` is advanced past each fired or refused firing.
    `own`: the pipelines of this code location, where the workspace has one per team; the
    jobs of every other pipeline are another location's sensor's to fire."""
    jobs = _jobs(profile.gateway_store_url)
    registry = DirectoryRegistry(profile.specs_dir)
    tick = _Tick([], [], [])
    for job in jobs.list(active_only=True):
        if own is not None and job.pipeline_id not in own:
            continue
        if job.problem is not None:  # a bad row is skipped; every other job still fires
            tick.problems.append(f"{job.id}: not fired: {job.problem}")
            continue
        try:
            due = latest_due_fire(job, now)
        except (ValueError, OverflowError) as err:
            tick.problems.append(f"{job.id}: not fired: {type(err).__name__}: {err}")
            continue
        if due is None or cursor.get(job.id, float("-inf")) >= due:
            continue
        if own is not None and _fired_already(usage, job, due):
            cursor[job.id] = due
            continue
        pipeline = runnable.get(job.pipeline_id)
        if pipeline is None:
            tick.problems.append(
                f"{job.id}: pipeline {job.pipeline_id!r} is not in this code location"
            )
            cursor[job.id] = due  # a job that cannot be fired now is not retried every tick
            continue
        try:
            params = fire_params(job, due)
            request = fire_request(job, pipeline.spec, due, pipeline.cluster)
        except SpecError as err:
            tick.problems.append(f"{job.id}: {err.lines[0]}")
            cursor[job.id] = due
            continue
        admission = AdmissionRequest(
            action=Action.FIRE,
            caller=Caller(team=job.team, actor=job.id),
            teams=teams,
            spec=pipeline.spec,
            params=params,
            registry=registry,
            usage=usage,
            now=now,
        )
        refused = admit(admission)
        wait = None
        if refused is None:
            limit = teams.policy(job.team).submissions_per_minute
            wait = usage.quota_window.take_now(job.team, limit, "fire", request.run_key or job.id)
        if (refused is not None and refused.later) or wait is not None:
            line = (
                refused.line
                if refused is not None
                else f"team {job.team} reached its submissions per minute"
            )
            note = f"firing of {_iso(due)} waits: {line}"
            jobs.note(job.id, note)
            tick.waiting.append(f"{job.id}: {note}")
            continue  # the cursor stays: the next tick asks again
        cursor[job.id] = due
        if refused is not None:
            note = f"firing of {_iso(due)} refused: {refused.line}"
            jobs.note(job.id, note)
            tick.problems.append(f"{job.id}: {note}")
            continue
        jobs.note(job.id, None)
        usage.requested[job.team] += 1
        tick.requests.append(request)
    return tick


def _fired_already(usage: InstanceUsage, job: ScheduledJob, due: float) -> bool:
    """Whether any code location's sensor already requested this firing. Dagster skips a
    run key its own sensor requested before, but a sensor is keyed by its location: after
    the split into a location per team (or a pipeline's move to another team's location or
    shard), the new location's sensor starts with no cursor and would fire again each job's
    latest firing, every one-off job ever scheduled included."""
    key = fire_key(job, due)
    return usage.instance.get_runs_count(RunsFilter(tags={RUN_KEY_TAG: key})) > 0


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()


def build_gateway_jobs_sensor(
    pipelines: list[PipelineDefs],
    profile: Profile,
    clock: Callable[[], float] = time.time,
    only_own: bool = False,
) -> SensorDefinition | None:
    """`only_own`: fire this location's pipelines' jobs only (a location per team)."""
    runnable = {p.spec.pipeline_id: p for p in pipelines if p.spec.partitions is None}
    own = frozenset(p.spec.pipeline_id for p in pipelines) if only_own else None
    if not runnable:
        return None

    # prototype (quantos_assets/asset_job_launch.py): the location's asset job, no job each
    proto = asset_job_launch()
    selection = AssetSelection.groups(*runnable) if proto else None

    @sensor(
        name=GATEWAY_JOBS_SENSOR,
        jobs=None if proto else [p.job for p in runnable.values()],
        asset_selection=selection,
        minimum_interval_seconds=profile.jobs_tick_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Runs the jobs scheduled through the gateway (POST /api/jobs/schedule) when due"
        ),
    )
    def _gateway_jobs(context):  # context unannotated: see [tool.mypy]
        try:
            teams = load_teams(profile.teams_file, required=profile.teams_file_named)
        except TeamsFileError as err:
            return SkipReason(f"no job fired: {err}")
        cursor: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        usage = InstanceUsage(context.instance, gateway_store(profile.gateway_store_url))
        tick = evaluate_jobs(profile, teams, runnable, usage, cursor, clock(), own)
        for line in tick.problems + tick.waiting:
            context.log.warning(line)
        if not tick.requests:
            reason = "; ".join(tick.problems + tick.waiting) or "no scheduled job is due"
            return SensorResult(skip_reason=reason, cursor=json.dumps(cursor, sort_keys=True))
        return SensorResult(run_requests=tick.requests, cursor=json.dumps(cursor, sort_keys=True))

    return _gateway_jobs
