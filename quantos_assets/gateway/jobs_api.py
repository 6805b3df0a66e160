"""Seed 003 §5: scheduled jobs - schedule, list (filter, sort, search), edit, cancel, retry.

A job is a pipeline to run at an execution time, once or on a cron recurrence. The gateway
stores it (job_store.py); the code location's `gateway_jobs` sensor fires it through
Dagster. Its state is read from its runs (tag `quantos/job_id`), so the list always agrees
with the Dagster UI.
"""
from __future__ import annotations

import re
import time
import zoneinfo
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from quantos_assets.admission.request import Action
from quantos_assets.client.submissions import ACTIVE_STATUSES, parse_params, spec_digest
from quantos_assets.gateway.auth import ERRORS, ApiError, Reader, Submitter, answer
from quantos_assets.gateway.job_store import JobChanges, ScheduledJob, iso_time
from quantos_assets.gateway.job_timing import (
    CRON_MAX_LENGTH,
    CRON_PATTERN,
    EARLIEST,
    MAX_YEARS_AHEAD,
    TIMEZONE_PATTERN,
    RecurrenceError,
    check_cron,
    check_execution_time,
    next_fire,
)
from quantos_assets.gateway.policy import (
    ONE_SPEC_SOURCE,
    admission,
    owned,
    rejecter,
    resolve_spec,
    take_slot,
)
from quantos_assets.gateway.registry_audit import audit_registration
from quantos_assets.gateway.tokens import Principal
from quantos_assets.gateway.wiring import Gateway
from quantos_assets.run_tags import TAG_TEAM
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import RuntimeParams
from resources.audit_log import bounded

TAG_JOB = "quantos/job_id"  # = sensors.gateway_jobs.TAG_JOB (sensors import us, not the reverse)
# invalid: a stored row that cannot be shown or fired (see job_store.py); `error` says why
JobStatus = Literal["scheduled", "queued", "running", "succeeded", "failed", "canceled", "invalid"]
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


class Recurrence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The patterns go into the schema only; the validators below check them with a message
    # that names the value (pydantic's own would quote the whole regex).
    cron: str = Field(
        max_length=CRON_MAX_LENGTH,
        json_schema_extra={"pattern": CRON_PATTERN},
        description="five cron fields (minute hour day-of-month month day-of-week), e.g. '30 16 * * 1-5'; "
        "numbers, *, ranges, steps, lists and JAN-DEC / SUN-SAT names; a date that never exists (30 2) is refused",
    )
    timezone: str = Field(
        default="UTC",
        max_length=64,
        json_schema_extra={"pattern": TIMEZONE_PATTERN},
        description="IANA zone the cron is read in, e.g. America/New_York",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            return check_cron(value)
        except RecurrenceError as err:
            raise ValueError(str(err)) from None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            if not re.fullmatch(TIMEZONE_PATTERN, value):
                raise ValueError(value)
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


def _bounded(value: datetime | None) -> datetime | None:
    return None if value is None else check_execution_time(value)


_EXECUTION_TIME = (
    f"ISO 8601 with a UTC offset, from {EARLIEST.date().isoformat()} to {MAX_YEARS_AHEAD} years from now "
    "(outside that: 422 naming execution_time)"
)


class ScheduleRequest(BaseModel):
    """Exactly one of `dag_spec` (the spec inline) or `spec_ref` (a registered pipeline_id)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_SPEC_SOURCE)

    type: str = Field(default="pipeline", pattern=r"^[a-z][a-z0-9_-]{0,59}$", description="job type, for filtering")
    dag_spec: dict[str, Any] | None = Field(default=None, description="the DAG spec (seed 000 §3.1)")
    spec_ref: str | None = Field(default=None, description="pipeline_id of a registered spec")
    runtime_params: dict[str, Any] = Field(default_factory=dict)
    nodes: list[str] = Field(default_factory=list, description="run only these nodes")
    description: str = Field(default="", max_length=2000)
    execution_time: datetime | None = Field(default=None, description=f"first run, default now; {_EXECUTION_TIME}")
    recurrence: Recurrence | None = Field(default=None, description="repeat on a cron after execution_time")

    _bounded = field_validator("execution_time")(classmethod(lambda cls, v: _bounded(v)))


class JobUpdate(BaseModel):
    """Only the fields present change; `recurrence: null` makes a recurring job one-off."""

    model_config = ConfigDict(extra="forbid")

    runtime_params: dict[str, Any] | None = None
    nodes: list[str] | None = None
    description: str | None = Field(default=None, max_length=2000)
    execution_time: datetime | None = Field(default=None, description=_EXECUTION_TIME)
    recurrence: Recurrence | None = None

    _bounded = field_validator("execution_time")(classmethod(lambda cls, v: _bounded(v)))


class RunRef(BaseModel):
    run_id: str
    status: str


class JobView(BaseModel):
    job_id: str
    type: str
    pipeline_id: str
    description: str
    execution_time: str
    recurrence: Recurrence | None
    status: JobStatus
    next_run_at: str | None
    last_run: RunRef | None
    runs: int
    note: str | None = Field(
        default=None,
        description="why the latest due firing has not run: held by a quota (it runs once the team is "
        "under its limits) or refused by the admission policy (skipped)",
    )
    created_at: str
    updated_at: str
    error: str | None = Field(default=None, description="status invalid: why the stored job cannot be shown or fired")


class JobAction(BaseModel):
    job_id: str
    status: JobStatus
    message: str
    run_id: str | None = None


def _runs(gw: Gateway, job: ScheduledJob) -> list[dict[str, Any]]:
    runs = answer(lambda: gw.client.api.runs_with_tags({TAG_JOB: job.id, TAG_TEAM: job.team}, limit=200))
    return sorted(runs, key=lambda r: r["creationTime"], reverse=True)


def _view(gw: Gateway, job: ScheduledJob, now: float, runs: list[dict[str, Any]] | None = None) -> JobView:
    runs = _runs(gw, job) if runs is None else runs
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
    next_run_at = None
    if problem is None and not job.canceled:
        try:  # the last fire before year 10000 has no next one
            next_run_at = iso_time(next_fire(job, now))
        except (ValueError, OverflowError) as err:
            problem = f"its next fire time cannot be computed ({type(err).__name__}: {err})"
    return JobView(
        job_id=job.id,
        type=job.type,
        pipeline_id=job.pipeline_id,
        description=job.description,
        execution_time=job.execution_time_iso(),
        # an invalid row's cron is shown only if it still reads as one
        recurrence=Recurrence(cron=job.cron, timezone=job.timezone) if job.cron and job.problem is None else None,
        status="invalid" if problem is not None and not job.canceled else status,
        next_run_at=next_run_at,
        last_run=RunRef(run_id=latest["runId"], status=latest["status"]) if latest else None,
        runs=len(runs),
        note=job.note,
        created_at=iso_time(job.created_at) or "",
        updated_at=iso_time(job.updated_at) or "",
        error=problem,
    )


def _own_job(gw: Gateway, who: Principal, job_id: str) -> ScheduledJob:
    return owned(who, "job", job_id, gw.jobs.get(job_id), lambda j: j.team)


def _check_nodes(loaded: LoadedSpec, nodes: list[str]) -> None:
    unknown = sorted(set(nodes) - {n.id for n in loaded.spec.nodes})
    if unknown:
        raise ApiError(422, f"nodes {unknown} are not in pipeline {loaded.spec.pipeline_id!r}")


def _audit(gw: Gateway, who: Principal, action: str, job: ScheduledJob | str, decision: str, detail: str, params: dict[str, Any] | None = None) -> None:
    subject = job if isinstance(job, str) else job.id
    digest = None if isinstance(job, str) else job.spec_sha256
    if decision == "rejected":
        gw.refusals.refused(actor=who.token_id, team=who.team, action=action, subject=subject,
                            spec_sha256=digest, detail=detail)
        return
    gw.audit.append(actor=who.token_id, team=who.team, action=action, subject=subject,
                    spec_sha256=digest, params=bounded(params or {}), decision=decision, detail=detail)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/api/jobs", tags=["jobs"])

    @router.post("/schedule", status_code=201, response_model=JobView, responses=ERRORS)
    def schedule(body: ScheduleRequest, request: Request, who: Submitter) -> JobView:
        """Schedule a pipeline to run at `execution_time` (default now), once or, with
        `recurrence`, on a cron from then on. The code location's `gateway_jobs` sensor fires
        it through Dagster; each fire is a run tagged `quantos/job_id`. Session-partitioned
        pipelines are refused (422): their spec's `schedule` block runs them."""
        gw: Gateway = request.app.state.gateway
        loaded = resolve_spec(gw, body.dag_spec, body.spec_ref)
        if loaded.spec.partitions is not None:
            raise ApiError(422, f"pipeline {loaded.spec.pipeline_id!r} is session-partitioned: use its spec's schedule block")
        _check_nodes(loaded, body.nodes)
        params = _params(body.runtime_params)
        reject = rejecter(gw, who, "schedule", loaded.spec.pipeline_id, None, body.runtime_params)
        admission(gw, who, Action.SCHEDULE, loaded.spec, params, reject)
        take_slot(gw, who.team, "schedule", loaded.spec.pipeline_id, reject)
        # the sensor needs the job in the location
        registered = answer(lambda: gw.client.ensure_registered(loaded, team=who.team, admin="admin" in who.scopes))
        if registered.registration is not None:
            audit_registration(gw.audit, who.token_id, who.team, registered.registration, loaded.spec.pipeline_id, spec_digest(loaded.spec))
        when = (body.execution_time or datetime.now(UTC)).timestamp()
        job = gw.jobs.create(
            team=who.team, actor=who.token_id, type=body.type, pipeline_id=loaded.spec.pipeline_id,
            spec_sha256=spec_digest(loaded.spec), runtime_params=_without_id(body.runtime_params),
            nodes=body.nodes, description=body.description, execution_time=when,
            cron=body.recurrence.cron if body.recurrence else None,
            timezone=body.recurrence.timezone if body.recurrence else "UTC",
        )
        _audit(gw, who, "schedule", job, "accepted", f"first run {job.execution_time_iso()}", body.runtime_params)
        return _view(gw, job, time.time(), runs=[])  # stored: the answer no longer depends on Dagster

    @router.get("", response_model=list[JobView], responses=ERRORS)
    def list_jobs(
        request: Request,
        who: Reader,
        type: Annotated[str | None, Query(description="only jobs of this type")] = None,
        status: Annotated[JobStatus | None, Query(description="only jobs in this state")] = None,
        search: Annotated[str | None, Query(max_length=200, description="substring of id, pipeline or description")] = None,
        sort: Annotated[Literal["created_at", "next_run_at", "status", "type", "pipeline_id"], Query()] = "created_at",
        order: Annotated[Literal["asc", "desc"], Query()] = "desc",
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[JobView]:
        """The team's jobs (every team's with an `admin` token), filtered by `type`, `status`
        and `search` (a substring of the id, pipeline or description), sorted by `sort` and
        `order`. A job's status is read from its latest run."""
        gw: Gateway = request.app.state.gateway
        team = None if "admin" in who.scopes else who.team
        jobs = [j for j in gw.jobs.list(team) if type is None or j.type == type]
        if search:
            needle = search.lower()
            jobs = [j for j in jobs if needle in f"{j.id} {j.pipeline_id} {j.description}".lower()]
        now = time.time()
        views = [_view(gw, j, now) for j in jobs]
        if status is not None:
            views = [v for v in views if v.status == status]
        views.sort(key=lambda v: (getattr(v, sort) is None, getattr(v, sort) or ""), reverse=order == "desc")
        return views[:limit]

    @router.get("/{job_id}", response_model=JobView, responses=ERRORS)
    def get_job(job_id: str, request: Request, who: Reader) -> JobView:
        """One job: schedule, status, next run and last run."""
        gw: Gateway = request.app.state.gateway
        return _view(gw, _own_job(gw, who, job_id), time.time())

    @router.put("/{job_id}", response_model=JobView, responses=ERRORS)
    def edit_job(job_id: str, body: JobUpdate, request: Request, who: Submitter) -> JobView:
        """Change the fields given (execution time, recurrence, runtime params, nodes,
        description); `recurrence: null` makes it one-off. 409 for a canceled job."""
        gw: Gateway = request.app.state.gateway
        job = _own_job(gw, who, job_id)
        if job.canceled:
            raise ApiError(409, f"job {job_id} is canceled; schedule a new one")
        changes = JobChanges(description=body.description, nodes=body.nodes)
        loaded = resolve_spec(gw, None, job.pipeline_id)
        params = _params(body.runtime_params if body.runtime_params is not None else job.runtime_params)
        reject = rejecter(gw, who, "edit", job.id, job.spec_sha256, body.runtime_params or {})
        admission(gw, who, Action.EDIT, loaded.spec, params, reject)
        take_slot(gw, job.team, "edit", job.id, reject)
        if body.runtime_params is not None:
            changes.runtime_params = _without_id(body.runtime_params)
        if body.nodes is not None:
            _check_nodes(loaded, body.nodes)
        if body.execution_time is not None:
            changes.execution_time = body.execution_time.timestamp()
        if "recurrence" in body.model_fields_set:
            if body.recurrence is None:
                changes.clear_cron = True
            else:
                changes.cron, changes.timezone = body.recurrence.cron, body.recurrence.timezone
        updated = gw.jobs.update(job_id, changes)
        _audit(gw, who, "edit", updated, "accepted", f"fields {sorted(body.model_fields_set)}", body.model_dump(mode="json", exclude_unset=True))
        return _view(gw, updated, time.time())

    @router.delete("/{job_id}", response_model=JobAction, responses=ERRORS)
    def cancel_job(job_id: str, request: Request, who: Submitter) -> JobAction:
        """Cancel the job: no further runs, and its active runs are terminated."""
        gw: Gateway = request.app.state.gateway
        job = _own_job(gw, who, job_id)
        if job.canceled:
            raise ApiError(409, f"job {job_id} is already canceled")
        gw.jobs.cancel(job_id)
        stopped = [r["runId"] for r in _runs(gw, job) if r["status"] in ACTIVE_STATUSES]
        for run_id in stopped:
            answer(partial(gw.client.api.terminate, run_id))
        message = "canceled; no further runs" + (f"; terminated {len(stopped)} active run(s)" if stopped else "")
        _audit(gw, who, "cancel", job, "accepted", message)
        return JobAction(job_id=job_id, status="canceled", message=message)

    @router.post("/{job_id}/retry", response_model=JobAction, responses=ERRORS)
    def retry_job(job_id: str, request: Request, who: Submitter) -> JobAction:
        """Re-execute the job's latest run from failure. 409 unless that run failed or was
        canceled."""
        gw: Gateway = request.app.state.gateway
        job = _own_job(gw, who, job_id)
        runs = _runs(gw, job)
        if not runs or runs[0]["status"] not in ("FAILURE", "CANCELED"):
            state = runs[0]["status"] if runs else "no run yet"
            _audit(gw, who, "retry", job, "rejected", f"latest run is {state}")
            raise ApiError(409, f"job {job_id}: only a failed or canceled run is retried (latest: {state})")
        reject = rejecter(gw, who, "retry", job.id, job.spec_sha256, {})
        registered = gw.registry.get(job.pipeline_id)
        admission(gw, who, Action.RETRY, registered.spec if registered else None, _params(job.runtime_params), reject)
        take_slot(gw, job.team, "retry", job.id, reject)
        run_id = answer(lambda: gw.client.api.reexecute_from_failure(runs[0]["runId"]))
        _audit(gw, who, "retry", job, "accepted", f"run {run_id} re-executes {runs[0]['runId']} from failure")
        return JobAction(job_id=job_id, status="queued", message="retry launched", run_id=run_id)

    return router


def _params(raw: dict[str, Any]) -> RuntimeParams:
    try:
        return parse_params(raw)
    except SpecError as err:
        raise ApiError(422, "invalid runtime_params", err.lines) from None


def _without_id(raw: dict[str, Any]) -> dict[str, Any]:
    """Each fire gets its own submission id (job id + fire time)."""
    return {k: v for k, v in raw.items() if k != "submission_id"}
