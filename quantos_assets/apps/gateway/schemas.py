"""The bodies the REST gateway reads and answers: its OpenAPI components, in one place.

Their names, docstrings and field descriptions are the published contract (docs/api/, made
by docs/generate.py), so they live apart from the routes that use them.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quantos_assets.apps.gateway.policy import ONE_SPEC_SOURCE
from quantos_assets.calendars.sessions import exchange_timezone
from quantos_assets.spec.market_time import FORMS
from quantos_assets.stores.job_timing import (
    CALENDAR_MAX_LENGTH,
    CRON_MAX_LENGTH,
    CRON_PATTERN,
    EARLIEST,
    MAX_YEARS_AHEAD,
    TIMEZONE_PATTERN,
    JobRecurrence,
    RecurrenceError,
    check_at,
    check_calendar,
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

NEXT_FIRES = 5  # fire times a job's answer lists
# invalid: a stored row that cannot be shown or fired (see job_store.py); `error` says why
JobStatus = Literal["scheduled", "queued", "running", "succeeded", "failed", "canceled", "invalid"]


# Exactly one of a cron or a calendar (with `at`). Each branch also says its key's type, so
# a recurrence as the API answers it (the other key null) is valid too.
ONE_RECURRENCE: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["cron"],
            "properties": {"cron": {"type": "string"}, "at": {"type": "null"}},
        },
        {
            "required": ["calendar", "at"],
            "properties": {"calendar": {"type": "string"}, "at": {"type": "string"}},
        },
    ]
}


class Recurrence(BaseModel):
    """Exactly one of `cron`, or `calendar` with `at` (the meaning of a spec's `schedule`
    block: once per session, holidays skipped, early closes and DST followed)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_RECURRENCE)

    # The patterns go into the schema only; the validators below check them with a message
    # that names the value (pydantic's own would quote the whole regex).
    cron: str | None = Field(
        default=None,
        max_length=CRON_MAX_LENGTH,
        json_schema_extra={"pattern": CRON_PATTERN},
        description=(
            "five cron fields (minute hour day-of-month month day-of-week), "
            "e.g. '30 16 * * 1-5'; numbers, *, ranges, steps, lists and JAN-DEC / SUN-SAT names; "
            "a date that never exists (30 2) is refused"
        ),
    )
    calendar: str | None = Field(
        default=None,
        max_length=CALENDAR_MAX_LENGTH,
        description=(
            "instead of cron: an exchange-calendars code (XNYS, XLON, XTKS, ...) or a custom "
            "calendar's (deploy/calendars, e.g. SIFMA_US); the job fires once per session of that "
            "calendar at `at`"
        ),
    )
    at: str | None = Field(
        default=None,
        max_length=CALENDAR_MAX_LENGTH,
        description=f"with calendar: when in each session, {FORMS}",
    )
    timezone: str | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"pattern": TIMEZONE_PATTERN},
        description=(
            "IANA zone, e.g. America/New_York: the one a cron (default UTC) or a wall-clock `at` "
            "(default: the exchange's) is read in, and the next fire times are shown in"
        ),
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else _checked(check_cron, value)

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, value: str | None) -> str | None:
        return None if value is None else _checked(check_calendar, value)

    @field_validator("at")
    @classmethod
    def _at(cls, value: str | None) -> str | None:
        return None if value is None else _checked(check_at, value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            if not re.fullmatch(TIMEZONE_PATTERN, value):
                raise ValueError(value)
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Recurrence:
        if self.cron is not None and self.calendar is not None:
            raise ValueError("give recurrence.cron or recurrence.calendar, not both")
        if self.cron is None and self.calendar is None:
            raise ValueError(
                "give recurrence.cron, or recurrence.calendar with recurrence.at "
                "(e.g. {'calendar': 'XNYS', 'at': 'close+30m'})"
            )
        if self.calendar is not None and self.at is None:
            raise ValueError("recurrence.at is required with recurrence.calendar (e.g. close+30m)")
        if self.cron is not None and self.at is not None:
            raise ValueError("recurrence.at goes with recurrence.calendar, not with a cron")
        return self

    def resolved(self) -> JobRecurrence:
        """What the store keeps: the zone made explicit (a cron's UTC, a calendar's exchange)."""
        if self.calendar is not None:
            zone = self.timezone or exchange_timezone(self.calendar)
            return JobRecurrence(calendar=self.calendar, at=self.at, timezone=zone)
        return JobRecurrence(cron=self.cron, timezone=self.timezone or "UTC")


def _checked(check: Callable[[str], str], value: str) -> str:
    """A job_timing check as a pydantic validator: its one line is the 422's."""
    try:
        return check(value)
    except RecurrenceError as err:
        raise ValueError(str(err)) from None


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
        default=None,
        description=(
            "repeat after execution_time: on a cron, or once per session of a trading calendar"
        ),
    )

    _bounded = field_validator("execution_time")(classmethod(lambda cls, v: _bounded(v)))


class JobUpdate(BaseModel):
    """Only the fields present change; a `recurrence` replaces the job's (cron or calendar),
    `recurrence: null` makes a recurring job one-off."""

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
    next_fires: list[str] = Field(
        default_factory=list,
        description=(
            f"the next {NEXT_FIRES} fire times, ISO 8601 in the recurrence's timezone with its "
            "offset (a one-off job: its execution time until it fires); none for a canceled "
            "or invalid job"
        ),
    )
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
