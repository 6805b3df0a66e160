"""Seed 003 §5: scheduled jobs - schedule, list (filter, sort, search), edit, cancel, retry.

A job is a pipeline to run at an execution time, once, on a cron recurrence, or once per
session of a trading calendar (a spec's `schedule` block: `{calendar, at}`). The gateway
stores it (job_store.py); the code location's `gateway_jobs` sensor fires it through
Dagster. Its state is read from its runs (job_views.py), so the list always agrees with the
Dagster UI.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from quantos_assets.admission.request import Action
from quantos_assets.apps.client.submissions import ACTIVE_STATUSES, spec_digest
from quantos_assets.apps.gateway.auth import ApiError, Reader, Submitter, answer
from quantos_assets.apps.gateway.job_views import job_runs, job_view
from quantos_assets.apps.gateway.policy import (
    admission,
    owned,
    rejecter,
    resolve_params,
    resolve_spec,
    take_slot,
)
from quantos_assets.apps.gateway.registry_audit import audit_registration
from quantos_assets.apps.gateway.schemas import (
    ERRORS,
    JobAction,
    JobStatus,
    JobUpdate,
    JobView,
    ScheduleRequest,
)
from quantos_assets.apps.gateway.tokens import Principal
from quantos_assets.apps.gateway.wiring import CurrentGateway, Gateway
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.stores.job_store import JobChanges, NewJob, ScheduledJob
from quantos_assets.stores.job_timing import JobRecurrence, RecurrenceError, Timed, next_fires
from resources.audit_log import bounded

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

_Sort = Literal["created_at", "next_run_at", "status", "type", "pipeline_id"]
_SEARCH = "substring of id, pipeline or description"


@router.post("/schedule", status_code=201, response_model=JobView, responses=ERRORS)
def schedule(body: ScheduleRequest, gw: CurrentGateway, who: Submitter) -> JobView:
    """Schedule a pipeline to run at `execution_time` (default now), once or, with
    `recurrence`, from then on on a cron or once per session of a trading calendar
    (`{calendar, at}`, as a spec's `schedule` block). The code location's `gateway_jobs`
    sensor fires it through Dagster; each fire is a run tagged `quantos/job_id`.
    Session-partitioned pipelines are refused (422): their spec's `schedule` block runs them."""
    loaded = resolve_spec(gw, body.dag_spec, body.spec_ref)
    pipeline_id = loaded.spec.pipeline_id
    if loaded.spec.partitions is not None:
        raise ApiError(
            422, f"pipeline {pipeline_id!r} is session-partitioned: use its spec's schedule block"
        )
    _check_nodes(loaded, body.nodes)
    recurrence = body.recurrence.resolved() if body.recurrence else JobRecurrence()
    new = NewJob(
        team=who.team,
        actor=who.token_id,
        type=body.type,
        pipeline_id=pipeline_id,
        spec_sha256=spec_digest(loaded.spec),
        runtime_params=_without_id(body.runtime_params),
        nodes=body.nodes,
        description=body.description,
        execution_time=(body.execution_time or datetime.now(UTC)).timestamp(),
        cron=recurrence.cron,
        timezone=recurrence.timezone,
        calendar=recurrence.calendar,
        calendar_at=recurrence.at,
    )
    _check_first_fire(new)
    params = resolve_params(body.runtime_params)
    reject = rejecter(gw, who, "schedule", pipeline_id, None, body.runtime_params)
    admission(gw, who, Action.SCHEDULE, loaded.spec, params, reject)
    take_slot(gw, who.team, "schedule", pipeline_id, reject)
    # the sensor needs the job in the location
    admin = "admin" in who.scopes
    registered = answer(lambda: gw.client.ensure_registered(loaded, team=who.team, admin=admin))
    if registered.registration is not None:
        audit_registration(
            gw.audit,
            who.token_id,
            who.team,
            registered.registration,
            pipeline_id,
            spec_digest(loaded.spec),
        )
    job = gw.jobs.create(new)
    detail = f"first run {job.execution_time_iso()}"
    _audit(gw, who, "schedule", job, "accepted", detail, body.runtime_params)
    # stored: the answer no longer depends on Dagster
    return job_view(gw, job, time.time(), runs=[])


@router.get("", response_model=list[JobView], responses=ERRORS)
def list_jobs(
    gw: CurrentGateway,
    who: Reader,
    type: Annotated[str | None, Query(description="only jobs of this type")] = None,
    status: Annotated[JobStatus | None, Query(description="only jobs in this state")] = None,
    search: Annotated[str | None, Query(max_length=200, description=_SEARCH)] = None,
    sort: Annotated[_Sort, Query()] = "created_at",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobView]:
    """The team's jobs (every team's with an `admin` token), filtered by `type`, `status`
    and `search` (a substring of the id, pipeline or description), sorted by `sort` and
    `order`. A job's status is read from its latest run."""
    team = None if "admin" in who.scopes else who.team
    jobs = [j for j in gw.jobs.list(team) if type is None or j.type == type]
    if search:
        needle = search.lower()
        jobs = [j for j in jobs if needle in f"{j.id} {j.pipeline_id} {j.description}".lower()]
    now = time.time()
    views = [job_view(gw, j, now) for j in jobs]
    if status is not None:
        views = [v for v in views if v.status == status]
    views.sort(
        key=lambda v: (getattr(v, sort) is None, getattr(v, sort) or ""), reverse=order == "desc"
    )
    return views[:limit]


@router.get("/{job_id}", response_model=JobView, responses=ERRORS)
def get_job(job_id: str, gw: CurrentGateway, who: Reader) -> JobView:
    """One job: schedule, status, next run and last run."""
    return job_view(gw, _own_job(gw, who, job_id), time.time())


@router.put("/{job_id}", response_model=JobView, responses=ERRORS)
def edit_job(job_id: str, body: JobUpdate, gw: CurrentGateway, who: Submitter) -> JobView:
    """Change the fields given (execution time, recurrence, runtime params, nodes,
    description); a recurrence replaces the job's (a cron for a calendar or the other way
    round), `recurrence: null` makes it one-off. 409 for a canceled job."""
    job = _own_job(gw, who, job_id)
    if job.canceled:
        raise ApiError(409, f"job {job_id} is canceled; schedule a new one")
    changes = JobChanges(description=body.description, nodes=body.nodes)
    if body.execution_time is not None:
        changes.execution_time = body.execution_time.timestamp()
    if "recurrence" in body.model_fields_set:
        changes.recurrence = (  # one-off: its times still shown in the zone it had
            JobRecurrence(timezone=job.timezone)
            if body.recurrence is None
            else body.recurrence.resolved()
        )
    if changes.execution_time is not None or changes.recurrence is not None:
        _check_first_fire(_changed(job, changes))
    loaded = resolve_spec(gw, None, job.pipeline_id)
    given = body.runtime_params
    params = resolve_params(given if given is not None else job.runtime_params)
    reject = rejecter(gw, who, "edit", job.id, job.spec_sha256, given or {})
    admission(gw, who, Action.EDIT, loaded.spec, params, reject)
    take_slot(gw, job.team, "edit", job.id, reject)
    if given is not None:
        changes.runtime_params = _without_id(given)
    if body.nodes is not None:
        _check_nodes(loaded, body.nodes)
    updated = gw.jobs.update(job_id, changes)
    detail = f"fields {sorted(body.model_fields_set)}"
    sent = body.model_dump(mode="json", exclude_unset=True)
    _audit(gw, who, "edit", updated, "accepted", detail, sent)
    return job_view(gw, updated, time.time())


@router.delete("/{job_id}", response_model=JobAction, responses=ERRORS)
def cancel_job(job_id: str, gw: CurrentGateway, who: Submitter) -> JobAction:
    """Cancel the job: no further runs, and its active runs are terminated."""
    job = _own_job(gw, who, job_id)
    if job.canceled:
        raise ApiError(409, f"job {job_id} is already canceled")
    gw.jobs.cancel(job_id)
    stopped = [r["runId"] for r in job_runs(gw, job) if r["status"] in ACTIVE_STATUSES]
    for run_id in stopped:
        answer(partial(gw.client.api.terminate, run_id))
    message = "canceled; no further runs"
    if stopped:
        message += f"; terminated {len(stopped)} active run(s)"
    _audit(gw, who, "cancel", job, "accepted", message)
    return JobAction(job_id=job_id, status="canceled", message=message)


@router.post("/{job_id}/retry", response_model=JobAction, responses=ERRORS)
def retry_job(job_id: str, gw: CurrentGateway, who: Submitter) -> JobAction:
    """Re-execute the job's latest run from failure. 409 unless that run failed or was
    canceled."""
    job = _own_job(gw, who, job_id)
    runs = job_runs(gw, job)
    if not runs or runs[0]["status"] not in ("FAILURE", "CANCELED"):
        state = runs[0]["status"] if runs else "no run yet"
        _audit(gw, who, "retry", job, "rejected", f"latest run is {state}")
        raise ApiError(
            409, f"job {job_id}: only a failed or canceled run is retried (latest: {state})"
        )
    latest = runs[0]["runId"]
    reject = rejecter(gw, who, "retry", job.id, job.spec_sha256, {})
    registered = gw.registry.get(job.pipeline_id)
    spec = registered.spec if registered else None
    admission(gw, who, Action.RETRY, spec, resolve_params(job.runtime_params), reject)
    take_slot(gw, job.team, "retry", job.id, reject)
    run_id = answer(lambda: gw.client.api.reexecute_from_failure(latest))
    _audit(gw, who, "retry", job, "accepted", f"run {run_id} re-executes {latest} from failure")
    return JobAction(job_id=job_id, status="queued", message="retry launched", run_id=run_id)


# -- helpers of the endpoints ---------------------------------------------------------------------


def _own_job(gw: Gateway, who: Principal, job_id: str) -> ScheduledJob:
    return owned(who, "job", job_id, gw.jobs.get(job_id), lambda j: j.team)


def _check_nodes(loaded: LoadedSpec, nodes: list[str]) -> None:
    unknown = sorted(set(nodes) - {n.id for n in loaded.spec.nodes})
    if unknown:
        raise ApiError(422, f"nodes {unknown} are not in pipeline {loaded.spec.pipeline_id!r}")


def _check_first_fire(job: Timed) -> None:
    """A calendar job's first fire must be one its calendar knows (sessions about a year
    ahead): else it would be stored with no next run to show or fire."""
    try:
        next_fires(job, time.time(), 1)
    except RecurrenceError as err:
        when = datetime.fromtimestamp(job.execution_time, UTC).isoformat()
        raise ApiError(422, f"execution_time {when}: {err}") from None


def _changed(job: ScheduledJob, changes: JobChanges) -> ScheduledJob:
    """The job as the timing changes would leave it (checked before anything is stored)."""
    timed = job
    if changes.execution_time is not None:
        timed = replace(timed, execution_time=changes.execution_time)
    if changes.recurrence is not None:
        new = changes.recurrence
        timed = replace(
            timed,
            cron=new.cron,
            calendar=new.calendar,
            calendar_at=new.at,
            timezone=new.timezone,
        )
    return timed


def _audit(
    gw: Gateway,
    who: Principal,
    action: str,
    job: ScheduledJob | str,
    decision: str,
    detail: str,
    params: dict[str, Any] | None = None,
) -> None:
    """A job decision in the audit trail; a refusal goes to the refusal log (digests only)."""
    subject = job if isinstance(job, str) else job.id
    digest = None if isinstance(job, str) else job.spec_sha256
    if decision == "rejected":
        gw.refusals.refused(
            actor=who.token_id,
            team=who.team,
            action=action,
            subject=subject,
            spec_sha256=digest,
            detail=detail,
        )
        return
    gw.audit.append(
        actor=who.token_id,
        team=who.team,
        action=action,
        subject=subject,
        spec_sha256=digest,
        params=bounded(params or {}),
        decision=decision,
        detail=detail,
    )


def _without_id(raw: dict[str, Any]) -> dict[str, Any]:
    """Each fire gets its own submission id (job id + fire time)."""
    return {k: v for k, v in raw.items() if k != "submission_id"}
