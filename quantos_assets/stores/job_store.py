"""Scheduled jobs (seed 003 §5): a pipeline to run at a time, once or on a recurrence
(a cron, or a trading calendar's sessions at a market-relative time).

The gateway writes them; the `gateway_jobs` sensor in the code location reads them and
asks Dagster for the runs, so Dagster's daemon stays the only scheduler. A job's runs
carry the tag `quantos/job_id`; its state (running, succeeded, failed) is read from them.

Reading a row never fails: a row that cannot be shown or fired (written by an older
version without today's bounds, or edited by hand) comes back with `problem` set, so
one bad row never breaks the listing or the sensor for anyone; the API shows it as
`invalid` with the reason (its owner can still see and cancel it) and the sensor skips it.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from quantos_assets.stores.job_timing import (
    CALENDAR_MAX_LENGTH,
    JobRecurrence,
    RecurrenceError,
    check_at,
    check_calendar,
    check_cron,
)
from resources.sql_store import reading, store_engine

log = logging.getLogger("quantos.gateway.jobs")

_metadata = sa.MetaData()
jobs = sa.Table(
    "gateway_jobs",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("team", sa.String(200), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("type", sa.String(60), nullable=False),
    sa.Column("pipeline_id", sa.String(128), nullable=False),
    sa.Column("spec_sha256", sa.String(64), nullable=False),
    sa.Column("runtime_params", sa.Text, nullable=False),
    sa.Column("nodes", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("execution_time", sa.Float, nullable=False),  # first fire, epoch seconds
    sa.Column("cron", sa.String(120), nullable=True),  # recurrence; None: once
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("canceled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # Why the latest due firing has not run (admission): a quota holds it, or it was refused.
    sa.Column("note", sa.Text, nullable=True),
    # A calendar recurrence (exclusive with cron): once per session of `calendar` at
    # `calendar_at` (close+30m, open-15m, 09:00), as a spec's schedule block.
    sa.Column("calendar", sa.String(CALENDAR_MAX_LENGTH), nullable=True),
    sa.Column("calendar_at", sa.String(CALENDAR_MAX_LENGTH), nullable=True),
)
# Columns added after the first release: a store made before gets them, its rows NULL there.
_ADDED_COLUMNS = {
    "note": "TEXT",  # firings admitted
    "calendar": f"VARCHAR({CALENDAR_MAX_LENGTH})",  # calendar recurrences
    "calendar_at": f"VARCHAR({CALENDAR_MAX_LENGTH})",
}


@dataclass(frozen=True)
class ScheduledJob:
    id: str
    team: str
    actor: str
    type: str
    pipeline_id: str
    spec_sha256: str
    runtime_params: dict[str, Any]
    nodes: list[str]
    description: str
    execution_time: float
    cron: str | None
    timezone: str
    canceled: bool
    created_at: float
    updated_at: float
    note: str | None = None
    problem: str | None = None  # why this row cannot be shown or fired (None: it can)
    calendar: str | None = None  # a calendar recurrence (cron is None then)
    calendar_at: str | None = None

    @property
    def recurring(self) -> bool:
        return self.cron is not None or self.calendar is not None

    def execution_time_iso(self) -> str:
        return iso_time(self.execution_time) or repr(self.execution_time)


def iso_time(stamp: float | None) -> str | None:
    """ISO 8601 in UTC; None for None or a number no datetime can hold."""
    try:
        return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()
    except (OverflowError, OSError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class NewJob:
    """A job as its caller schedules it: everything but the id and times the store gives it."""

    team: str
    actor: str
    type: str
    pipeline_id: str
    spec_sha256: str
    runtime_params: dict[str, Any]
    nodes: list[str]
    description: str
    execution_time: float  # first fire, epoch seconds
    cron: str | None  # recurrence; None: once (unless a calendar is given)
    timezone: str  # the zone `cron` (or a calendar's wall-clock `at`) is read in
    calendar: str | None = None  # or a calendar recurrence: its sessions at `calendar_at`
    calendar_at: str | None = None


@dataclass
class JobChanges:
    """Fields a PUT may change (None: keep)."""

    execution_time: float | None = None
    # replaces cron, calendar, calendar_at and timezone together (JobRecurrence(): once)
    recurrence: JobRecurrence | None = None
    runtime_params: dict[str, Any] | None = None
    nodes: list[str] | None = None
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _row(row: Any) -> ScheduledJob:
    """A stored row as a job; what does not parse is named in `problem`, with a safe default."""
    data = row._asdict()
    problems: list[str] = []
    for name, kind in (("runtime_params", dict), ("nodes", list)):
        try:
            value = json.loads(data[name])
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, kind):
            problems.append(f"{name} is not a JSON {kind.__name__}")
            value = kind()
        data[name] = value
    for name in ("execution_time", "created_at", "updated_at"):
        try:
            data[name] = float(data[name])
        except (TypeError, ValueError):
            data[name] = math.nan
        if iso_time(data[name]) is None:
            problems.append(f"{name} {data[name]!r} is not a time (epoch seconds)")
    problems += _recurrence_problems(data["cron"], data["calendar"], data["calendar_at"])
    try:
        zoneinfo.ZoneInfo(str(data["timezone"]))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"unknown timezone {data['timezone']!r}")
    data["canceled"] = bool(data["canceled"])
    if problems:
        data["problem"] = "; ".join(problems)
        _report(str(data["id"]), data["problem"])
    return ScheduledJob(**data)


def _recurrence_problems(cron: object, calendar: object, at: object) -> list[str]:
    if cron is not None and calendar is not None:
        return [f"both a cron ({cron!r}) and a calendar ({calendar!r})"]
    try:
        if cron is not None:
            check_cron(str(cron))
        if calendar is not None:
            check_calendar(str(calendar))
            if at is None:
                return ["a calendar recurrence without calendar_at"]
            check_at(str(at))
    except RecurrenceError as err:
        return [str(err)]
    return []


_reported: set[tuple[str, str]] = set()


def _report(job_id: str, problem: str) -> None:
    """One log line per bad row and problem per process (the sensor reads the table every tick)."""
    if (job_id, problem) not in _reported:
        _reported.add((job_id, problem))
        log.warning("scheduled job %s cannot be shown or fired: %s", job_id, problem)


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _metadata.create_all(engine)
        have = {c["name"] for c in sa.inspect(engine).get_columns("gateway_jobs")}
        with engine.begin() as conn:
            for name, ddl in _ADDED_COLUMNS.items():
                if name not in have:  # names and types are ours, never the caller's
                    conn.exec_driver_sql(f"ALTER TABLE gateway_jobs ADD COLUMN {name} {ddl}")

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(store_engine(url))

    def create(self, job: NewJob) -> ScheduledJob:
        now = time.time()
        job_id = f"job-{uuid.uuid4().hex[:12]}"
        values = {
            "id": job_id,
            "team": job.team,
            "actor": job.actor,
            "type": job.type,
            "pipeline_id": job.pipeline_id,
            "spec_sha256": job.spec_sha256,
            "runtime_params": json.dumps(job.runtime_params, sort_keys=True),
            "nodes": json.dumps(job.nodes),
            "description": job.description,
            "execution_time": job.execution_time,
            "cron": job.cron,
            "timezone": job.timezone,
            "calendar": job.calendar,
            "calendar_at": job.calendar_at,
            "canceled": False,
            "created_at": now,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            conn.execute(sa.insert(jobs).values(**values))
        return self._written(job_id)

    def get(self, job_id: str) -> ScheduledJob | None:
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return _row(row) if row else None

    def list(self, team: str | None = None, active_only: bool = False) -> list[ScheduledJob]:
        query = sa.select(jobs).order_by(jobs.c.created_at)
        if team is not None:
            query = query.where(jobs.c.team == team)
        if active_only:
            query = query.where(jobs.c.canceled.is_(False))
        with reading(self.engine) as conn:
            return [_row(r) for r in conn.execute(query)]

    def update(self, job_id: str, changes: JobChanges) -> ScheduledJob:
        values: dict[str, Any] = {"updated_at": time.time()}
        if changes.execution_time is not None:
            values["execution_time"] = changes.execution_time
        if changes.recurrence is not None:
            values["cron"] = changes.recurrence.cron
            values["calendar"] = changes.recurrence.calendar
            values["calendar_at"] = changes.recurrence.at
            values["timezone"] = changes.recurrence.timezone
        if changes.runtime_params is not None:
            values["runtime_params"] = json.dumps(changes.runtime_params, sort_keys=True)
        if changes.nodes is not None:
            values["nodes"] = json.dumps(changes.nodes)
        if changes.description is not None:
            values["description"] = changes.description
        with self.engine.begin() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**values))
        return self._written(job_id)

    def note(self, job_id: str, text: str | None) -> None:
        """Record (or clear) why the job's latest due firing has not run."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id, jobs.c.note.is_distinct_from(text))
                .values(note=text)
            )

    def cancel(self, job_id: str) -> ScheduledJob:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id)
                .values(canceled=True, updated_at=time.time())
            )
        return self._written(job_id)

    def _written(self, job_id: str) -> ScheduledJob:
        """A job just inserted or updated (jobs are never deleted, only canceled)."""
        job = self.get(job_id)
        if job is None:
            raise KeyError(f"no scheduled job {job_id!r}")
        return job
