"""A scheduled job as the API shows it: its state read from its runs in Dagster.

The gateway stores only what to run and when (job_store.py); whether a job is queued,
running, succeeded or failed is read from the runs the `gateway_jobs` sensor made for it
(tag `quantos/job_id`), so the API always agrees with the Dagster UI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from quantos_assets.apps.gateway.auth import answer
from quantos_assets.apps.gateway.schemas import (
    NEXT_FIRES,
    JobStatus,
    JobView,
    Recurrence,
    RunRef,
)
from quantos_assets.apps.gateway.wiring import Gateway
from quantos_assets.stores.job_store import ScheduledJob, iso_time
from quantos_assets.stores.job_timing import next_fires
from resources.run_tag_keys import TAG_JOB, TAG_TEAM

_RUN_TO_JOB: dict[str, JobStatus] = {
    "QUEUED": "queued",
    "NOT_STARTED": "queued",
    "STARTING": "running",
    "STARTED": "running",
    "CANCELING": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "CANCELED": "canceled",
}


def job_runs(gw: Gateway, job: ScheduledJob) -> list[dict[str, Any]]:
    """The job's runs (of its team only), newest first."""
    tags = {TAG_JOB: job.id, TAG_TEAM: job.team}
    runs = answer(lambda: gw.client.api.runs_with_tags(tags, limit=200))
    return sorted(runs, key=lambda r: r["creationTime"], reverse=True)


def job_view(
    gw: Gateway, job: ScheduledJob, now: float, runs: list[dict[str, Any]] | None = None
) -> JobView:
    """The job's answer as of `now`; `runs` given: no need to ask Dagster (a job just made)."""
    runs = job_runs(gw, job) if runs is None else runs
    latest = runs[0] if runs else None
    status: JobStatus
    if job.canceled:
        status = "canceled"
    elif latest is None:
        status = "scheduled"
    else:
        status = _RUN_TO_JOB.get(latest["status"], "running")
        if job.recurring and status in ("succeeded", "canceled"):
            status = "scheduled"
    problem = job.problem
    fires: list[float] = []
    if problem is None and not job.canceled:
        try:  # the last fire before year 10000 has no next one; a calendar's last session
            fires = next_fires(job, now, NEXT_FIRES)
        except (ValueError, OverflowError) as err:
            problem = f"its next fire time cannot be computed ({type(err).__name__}: {err})"
    zone = ZoneInfo(job.timezone) if fires else None
    return JobView(
        job_id=job.id,
        type=job.type,
        pipeline_id=job.pipeline_id,
        description=job.description,
        execution_time=job.execution_time_iso(),
        # an invalid row's recurrence is shown only if it still reads as one
        recurrence=_recurrence(job) if job.problem is None else None,
        status="invalid" if problem is not None and not job.canceled else status,
        next_run_at=iso_time(fires[0]) if fires else None,
        next_fires=[datetime.fromtimestamp(f, zone).isoformat() for f in fires],
        last_run=RunRef(run_id=latest["runId"], status=latest["status"]) if latest else None,
        runs=len(runs),
        note=job.note,
        created_at=iso_time(job.created_at) or "",
        updated_at=iso_time(job.updated_at) or "",
        error=problem,
    )


def _recurrence(job: ScheduledJob) -> Recurrence | None:
    if job.cron is not None:
        return Recurrence(cron=job.cron, timezone=job.timezone)
    if job.calendar is not None:
        return Recurrence(calendar=job.calendar, at=job.calendar_at, timezone=job.timezone)
    return None
