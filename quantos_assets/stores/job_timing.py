"""When a scheduled job fires: once at its execution time, or from then on on its cron or
on a trading calendar.

Cron is evaluated by Dagster's own iterator (the one its schedules use), in the job's
timezone, so DST behaves as it does for any Dagster schedule. A calendar recurrence
(`calendar` + `at`) is a spec's `schedule` block and is evaluated by the same table
(calendars/ticks.py): once per session, holidays skipped, early closes and DST followed.
A fire missed while the daemon was down is run once, latest only, never as a burst of
stale fires.

What the API accepts is bounded here too, so nothing is stored that cannot be shown or
fired: an execution time between `EARLIEST` and `MAX_YEARS_AHEAD` years from now (a
time in year 10000 once made every listing of the team answer 500), a cron of five
fields in the grammar `CRON_PATTERN` states (the OpenAPI schema carries it) that fires
at least once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol

from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

from quantos_assets.calendars.sessions import unknown_calendar_message
from quantos_assets.calendars.ticks import last_tick, latest_tick, ticks_after
from quantos_assets.spec.market_time import parse_market_time
from quantos_assets.spec.models import Schedule

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_YEARS_AHEAD = 10
CRON_MAX_LENGTH = 120  # the store's column
CALENDAR_MAX_LENGTH = 32  # the store's columns `calendar` and `calendar_at`


def _field(value: str, names: tuple[str, ...] = ()) -> str:
    """One cron field: `*`, values, ranges and steps, comma-separated."""
    v = "(?:" + "|".join([value, *names]) + ")"
    step = "(?:/[1-9][0-9]?)"
    item = rf"(?:\*{step}?|{v}(?:-{v})?{step}?)"
    return rf"{item}(?:,{item})*"


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# minute hour day-of-month month day-of-week; a subset of what Dagster accepts (no @daily,
# L, W, # or seconds), so a string matching it is refused only for a date that never
# exists (30 February) -- tests/unit/test_job_timing.py checks that against Dagster.
CRON_FIELDS = (
    _field("[0-5]?[0-9]"),
    _field("[01]?[0-9]|2[0-3]"),
    _field("0?[1-9]|[12][0-9]|3[01]"),
    _field("0?[1-9]|1[0-2]", _MONTHS + tuple(m.lower() for m in _MONTHS)),
    _field("[0-7]", _DAYS + tuple(d.lower() for d in _DAYS)),
)
CRON_PATTERN = "^" + " +".join(CRON_FIELDS) + "$"
# IANA zone names ("America/New_York", "Etc/GMT+5", "UTC"); unknown ones are refused by name.
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"


class RecurrenceError(ValueError):
    """A recurrence that cannot fire: a cron string Dagster would not accept, an unknown
    calendar, a bad market time (one line naming it)."""


class Timed(Protocol):
    """What decides when a job fires (a stored job, or one about to be stored)."""

    @property
    def execution_time(self) -> float: ...
    @property
    def cron(self) -> str | None: ...
    @property
    def calendar(self) -> str | None: ...
    @property
    def calendar_at(self) -> str | None: ...
    @property
    def timezone(self) -> str: ...


@dataclass(frozen=True)
class JobRecurrence:
    """How a job repeats after its execution time: a cron read in `timezone`, or once per
    session of `calendar` at `at` (`timezone`: that of wall-clock times and of the shown
    fire times); neither: it runs once."""

    cron: str | None = None
    calendar: str | None = None
    at: str | None = None
    timezone: str = "UTC"


def check_cron(cron: str) -> str:
    if not re.fullmatch(CRON_PATTERN, cron) or not is_valid_cron_string(cron):
        raise RecurrenceError(
            f"recurrence.cron {cron!r} is not a valid cron string (e.g. '30 16 * * 1-5')"
        )
    try:
        next(iter(cron_string_iterator(time.time(), cron, "UTC")))
    except ValueError:  # croniter: a date that never exists, e.g. '0 0 31 4 *'
        raise RecurrenceError(f"recurrence.cron {cron!r} never fires (no such date)") from None
    return cron


def check_calendar(code: str) -> str:
    """An exchange-calendars code a spec's `schedule` may name (the spec's message if not)."""
    problem = unknown_calendar_message(code)
    if problem:
        raise RecurrenceError(problem)
    return code


def check_at(text: str) -> str:
    """A market time as a spec's `schedule.at` takes it: close+30m, open-15m, 09:00."""
    try:
        parse_market_time(text)
    except ValueError as err:
        raise RecurrenceError(str(err)) from None
    return text


@lru_cache(maxsize=256)
def calendar_schedule(calendar: str, at: str, timezone: str) -> Schedule:
    """A calendar recurrence as the spec `schedule` block it means: one meaning, one table."""
    return Schedule(calendar=calendar, at=at, timezone=timezone)


def _schedule(job: Timed) -> Schedule | None:
    if job.calendar is None:
        return None
    return calendar_schedule(job.calendar, job.calendar_at or "", job.timezone)


def _utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def check_execution_time(value: datetime) -> datetime:
    """An aware time within [EARLIEST, now + MAX_YEARS_AHEAD years] (ValueError naming it)."""
    if value.tzinfo is None:
        raise ValueError("give a timezone offset, e.g. 2026-12-01T16:30:00-05:00")
    latest = datetime.now(UTC) + timedelta(days=round(365.25 * MAX_YEARS_AHEAD))
    if value < EARLIEST:
        raise ValueError(f"{value.isoformat()} is before {EARLIEST.date().isoformat()}")
    if value > latest:
        raise ValueError(
            f"{value.isoformat()} is more than {MAX_YEARS_AHEAD} years ahead (latest "
            f"{latest.date().isoformat()})"
        )
    return value


def latest_due_fire(job: Timed, now: float) -> float | None:
    """The most recent fire time <= now (None: not yet due)."""
    if job.execution_time > now:
        return None
    schedule = _schedule(job)
    if schedule is not None:
        tick = latest_tick(schedule, _utc(now))
        stamp = tick.time.timestamp() if tick is not None else None
        return stamp if stamp is not None and stamp >= job.execution_time else None
    if job.cron is None:
        return job.execution_time
    for moment in cron_string_iterator(now, job.cron, job.timezone, ascending=False):
        stamp = moment.timestamp()
        if stamp <= now:
            return stamp if stamp >= job.execution_time else None
    return None


def next_fire(job: Timed, after: float) -> float | None:
    """The first fire time > after (None: a one-off job that has fired)."""
    fires = next_fires(job, after, 1)
    return fires[0] if fires else None


def next_fires(job: Timed, after: float, count: int) -> list[float]:
    """The first `count` fire times > after, from the execution time on (epoch seconds).

    A calendar job past the last session its calendar knows (about a year ahead, see
    calendars/sessions.py) has none that can be computed: RecurrenceError, not an empty
    list, which would read as "never fires again".
    """
    schedule = _schedule(job)
    if schedule is not None:
        # at or after the execution time: strictly after the microsecond before it
        start = max(_utc(after), _utc(job.execution_time) - timedelta(microseconds=1))
        ticks = ticks_after(schedule, start, count)
        if not ticks and count > 0:
            known = last_tick(schedule).partition
            raise RecurrenceError(
                f"no {schedule.calendar} session after {start.date().isoformat()} is known yet "
                f"(the calendar has sessions up to {known}, about a year ahead)"
            )
        return [t.time.timestamp() for t in ticks]
    if job.cron is None:
        return [job.execution_time] if job.execution_time > after and count > 0 else []
    fires: list[float] = []
    if count <= 0:
        return fires
    for moment in cron_string_iterator(max(after, job.execution_time), job.cron, job.timezone):
        if moment.timestamp() > after:
            fires.append(moment.timestamp())
            if len(fires) == count:
                break
    return fires
