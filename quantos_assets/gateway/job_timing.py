"""When a scheduled job fires: once at its execution time, or on its cron from then on.

Cron is evaluated by Dagster's own iterator (the one its schedules use), in the job's
timezone, so DST behaves as it does for any Dagster schedule. A fire missed while the
daemon was down is run once, latest only, never as a burst of stale fires.
"""
from __future__ import annotations

from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

from quantos_assets.gateway.job_store import ScheduledJob


class RecurrenceError(ValueError):
    """A cron string Dagster would not accept (one line naming it)."""


def check_cron(cron: str) -> str:
    if not is_valid_cron_string(cron):
        raise RecurrenceError(f"recurrence.cron {cron!r} is not a valid cron string (e.g. '30 16 * * 1-5')")
    return cron


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
