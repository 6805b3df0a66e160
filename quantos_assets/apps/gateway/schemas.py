"""The bodies the REST gateway reads and answers: its OpenAPI components, in one place.

Their names, docstrings and field descriptions are the published contract (docs/api/, made
by docs/generate.py), so they live apart from the routes that use them.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from quantos_assets.apps.gateway.policy import ONE_SPEC_SOURCE
from quantos_assets.stores.job_timing import (
    CRON_MAX_LENGTH,
    CRON_PATTERN,
    EARLIEST,
    MAX_YEARS_AHEAD,
    TIMEZONE_PATTERN,
    RecurrenceError,
    check_cron,
    check_execution_time,
)

# -- errors: every 4xx/5xx ------------------------------------------------------------------------


class ErrorBody(BaseModel):
    error: str
    lines: list[str] = Field(default_factory=list)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429, 502, 503, 504)
}


# -- submissions (/api/orch) ----------------------------------------------------------------------


class SubmitRequest(BaseModel):
    """Seed 000 §8.1: exactly one of the spec inline (`dag_spec`) or a registered pipeline
    (`spec_ref`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_SPEC_SOURCE)

    dag_spec: dict[str, Any] | None = Field(
        default=None, description="the DAG spec (seed 000 §3.1)"
    )
    spec_ref: str | None = Field(
        default=None, description="pipeline_id of a spec already in the registry"
    )
    runtime_params: dict[str, Any] = Field(
        default_factory=dict, description="seed 000 §3.2; submission_id optional"
    )
    refs: dict[str, Any] = Field(
        default_factory=dict, description="opaque references kept in the audit record"
    )
    nodes: list[str] | None = Field(default=None, description="run only these nodes")
    partition: str | None = Field(
        default=None, description="session (YYYY-MM-DD) of a session-partitioned spec"
    )


class SubmitAccepted(BaseModel):
    """202: committed to the gateway's launch queue; `run_id` once Dagster has the run
    (null on the first answer; status_url shows it, or why the launch failed)."""

    submission_id: str
    run_id: str | None
    state: str = Field(description="queued, launching, launched, failed or canceled")
    pipeline_id: str
    spec_sha256: str
    status_url: str = Field(
        description=(
            "where to follow it: QUANTOS_PUBLIC_URL + path when the gateway has one, else the path"
        )
    )


class ActionResult(BaseModel):
    submission_id: str
    run_id: str | None
    action: str


# -- scheduled jobs (/api/jobs) -------------------------------------------------------------------

# invalid: a stored row that cannot be shown or fired (see job_store.py); `error` says why
JobStatus = Literal["scheduled", "queued", "running", "succeeded", "failed", "canceled", "invalid"]


class Recurrence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The patterns go into the schema only; the validators below check them with a message
    # that names the value (pydantic's own would quote the whole regex).
    cron: str = Field(
        max_length=CRON_MAX_LENGTH,
        json_schema_extra={"pattern": CRON_PATTERN},
        description=(
            "five cron fields (minute hour day-of-month month day-of-week), "
            "e.g. '30 16 * * 1-5'; numbers, *, ranges, steps, lists and JAN-DEC / SUN-SAT names; "
            "a date that never exists (30 2) is refused"
        ),
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
    f"ISO 8601 with a UTC offset, from {EARLIEST.date().isoformat()} to {MAX_YEARS_AHEAD} "
    "years from now (outside that: 422 naming execution_time)"
)


class ScheduleRequest(BaseModel):
    """Exactly one of `dag_spec` (the spec inline) or `spec_ref` (a registered pipeline_id)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_SPEC_SOURCE)

    type: str = Field(
        default="pipeline",
        pattern=r"^[a-z][a-z0-9_-]{0,59}$",
        description="job type, for filtering",
    )
    dag_spec: dict[str, Any] | None = Field(
        default=None, description="the DAG spec (seed 000 §3.1)"
    )
    spec_ref: str | None = Field(default=None, description="pipeline_id of a registered spec")
    runtime_params: dict[str, Any] = Field(default_factory=dict)
    nodes: list[str] = Field(default_factory=list, description="run only these nodes")
    description: str = Field(default="", max_length=2000)
    execution_time: datetime | None = Field(
        default=None, description=f"first run, default now; {_EXECUTION_TIME}"
    )
    recurrence: Recurrence | None = Field(
        default=None, description="repeat on a cron after execution_time"
    )

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
        description=(
            "why the latest due firing has not run: held by a quota (it runs once the "
            "team is under its limits) or refused by the admission policy (skipped)"
        ),
    )
    created_at: str
    updated_at: str
    error: str | None = Field(
        default=None, description="status invalid: why the stored job cannot be shown or fired"
    )


class JobAction(BaseModel):
    job_id: str
    status: JobStatus
    message: str
    run_id: str | None = None
