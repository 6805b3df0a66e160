"""Seed 003's scheduled jobs, fired by Dagster: the sensor reads the gateway's job table.

The gateway only records what to run and when (quantos_assets/gateway/job_store.py);
this sensor turns every due fire into a run request, so the daemon remains the one
scheduler. The cursor holds each job's last fired time and is committed by Dagster
together with the run requests; the run key `job@fire-time` makes a repeated tick a
no-op. A fire missed while the daemon was down runs once (latest only).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorResult,
    SkipReason,
    sensor,
)

from quantos_assets.gateway.job_store import JobStore, ScheduledJob
from quantos_assets.gateway.job_timing import latest_due_fire
from quantos_assets.gateway.settings import gateway_settings
from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.run_tags import TAG_TEAM, runtime_run_tags
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec.models import DagSpec

TAG_JOB = "quantos/job_id"
INTERVAL_SECONDS = 15
_STORES: dict[str, JobStore] = {}


def _store(url: str) -> JobStore:
    if url not in _STORES:
        _STORES[url] = JobStore.from_url(url)
    return _STORES[url]


def fire_request(job: ScheduledJob, spec: DagSpec, fired_at: float, production: bool) -> RunRequest:
    stamp = datetime.fromtimestamp(fired_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    params = load_runtime_params(
        {**job.runtime_params, "submission_id": f"{job.id}.{stamp}"}, name=f"job {job.id} runtime_params"
    )
    tags = {**runtime_run_tags(params), TAG_TEAM: job.team, TAG_JOB: job.id, "quantos/spec_sha256": job.spec_sha256}
    keys = None
    if job.nodes:
        by_id = {n.id: n for n in spec.nodes}
        keys = [[spec.pipeline_id, out] for n in job.nodes if n in by_id for out in (by_id[n].outs or [n])]
    run_config = None
    if production:
        from quantos_assets.k8s.step_config import submission_run_config

        run_config = submission_run_config(spec, params)
    from dagster import AssetKey

    return RunRequest(
        run_key=f"{job.id}@{stamp}",
        job_name=spec.pipeline_id,
        tags=tags,
        asset_selection=[AssetKey(k) for k in keys] if keys else None,
        run_config=run_config or {},
    )


def build_gateway_jobs_sensor(
    pipelines: list[PipelineDefs], clock: Callable[[], float] = time.time
) -> SensorDefinition | None:
    runnable = {p.spec.pipeline_id: p for p in pipelines if p.spec.partitions is None}
    if not runnable:
        return None

    @sensor(
        name="gateway_jobs",
        jobs=[p.job for p in runnable.values()],
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description="Runs the jobs scheduled through the gateway (POST /api/jobs/schedule) when due",
    )
    def _gateway_jobs(context):  # context unannotated: see [tool.mypy]
        settings = gateway_settings()
        cursor: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        now = clock()
        requests: list[RunRequest] = []
        problems: list[str] = []
        for job in _store(settings.store_url).list(active_only=True):
            if job.problem is not None:  # a bad row is skipped; every other job still fires
                problems.append(f"{job.id}: not fired: {job.problem}")
                continue
            try:
                due = latest_due_fire(job, now)
            except (ValueError, OverflowError) as err:
                problems.append(f"{job.id}: not fired: {type(err).__name__}: {err}")
                continue
            if due is None or cursor.get(job.id, float("-inf")) >= due:
                continue
            pipeline = runnable.get(job.pipeline_id)
            if pipeline is None:
                problems.append(f"{job.id}: pipeline {job.pipeline_id!r} is not in this code location")
                continue
            try:
                requests.append(fire_request(job, pipeline.spec, due, settings.production))
            except SpecError as err:
                problems.append(f"{job.id}: {err.lines[0]}")
            cursor[job.id] = due  # a job that cannot be fired now is not retried every tick
        for problem in problems:
            context.log.warning(problem)
        if not requests:
            return SkipReason("; ".join(problems) if problems else "no scheduled job is due")
        return SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))

    return _gateway_jobs
