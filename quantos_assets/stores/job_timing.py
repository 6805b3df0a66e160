"""When a scheduled job fires: once at its execution time, or on its cron from then on.

Cron is evaluated by Dagster's own iterator (the one its schedules use), in the job's
timezone, so DST behaves as it does for any Dagster schedule. A fire missed while the
daemon was down is run once, latest only, never as a burst of stale fires.

What the API accepts is bounded here too, so nothing is stored that cannot be shown or
fired: an execution time between `EARLIEST` and `MAX_YEARS_AHEAD` years from now (a
time in year 10000 once made every listing of the team answer 500), a cron of five
fields in the grammar `CRON_PATTERN` states (the OpenAPI schema carries it) that fires
at least once.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

if TYPE_CHECKING:
    from quantos_assets.stores.job_store import ScheduledJob

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_YEARS_AHEAD = 10
CRON_MAX_LENGTH = 120  # the store's column


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
    """A cron string Dagster would not accept (one line naming it)."""


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


def latest_due_fire(job: ScheduledJob, now: float) -> float | None:
    """The most recent fire time <= now (None: not yet due)."""
    if job.execution_time > now:
        return None
    if job.cron is None:
        return job.execution_time
    for moment in cron_string_iterator(now, job.cron, job.timezone, ascending=False):
        stamp = moment.timestamp()
        if stamp <= now:
            return stamp if stamp >= job.execution_time else None
    return None


def next_fire(job: ScheduledJob, after: float) -> float | None:
    """The first fire time > after (None: a one-off job that has fired)."""
    if job.cron is None:
        return job.execution_time if job.execution_time > after else None
    for moment in cron_string_iterator(max(after, job.execution_time), job.cron, job.timezone):
        if moment.timestamp() > after:
            return moment.timestamp()
    return None
