"""The fire times of a spec's schedule: one per session, at the market-relative time.

Shared by `quantos ticks` (the preview users check before deploying), the
Dagster schedule (which maps a cron tick back to its session) and the gateway's
calendar jobs (which look up the fire times around an instant), so what the
preview shows is what the daemon launches, for a spec and a job alike.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from quantos_assets.calendars.sessions import exchange_timezone, fire_times
from quantos_assets.spec.market_time import parse_market_time
from quantos_assets.spec.models import Schedule


@dataclass(frozen=True)
class Tick:
    """One fire time (aware, in the schedule's timezone) and the session it is for."""

    time: datetime
    partition: str


def schedule_timezone(schedule: Schedule) -> str:
    return schedule.timezone or exchange_timezone(schedule.calendar)


@lru_cache(maxsize=256)
def _table(calendar: str, at: str, tz: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(fire instants as epoch ns, session keys) of every session, sorted by time."""
    series = fire_times(calendar, parse_market_time(at), tz).sort_values()
    instants = (
        tuple(int(v) for v in series.array.asi8)
        if hasattr(series.array, "asi8")
        else tuple(int(v.value) for v in series)
    )
    keys = tuple(ts.strftime("%Y-%m-%d") for ts in series.index)
    return instants, keys


def fire_table(calendar: str, at: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Every session's instant for `at` (e.g. "close", "close+2h") on the exchange's clock."""
    return _table(calendar, at, exchange_timezone(calendar))


def schedule_table(schedule: Schedule) -> tuple[tuple[int, ...], tuple[str, ...]]:
    return _table(schedule.calendar, schedule.at, schedule_timezone(schedule))


def ticks_between(schedule: Schedule, start: date, end: date) -> list[Tick]:
    """Every fire time whose session lies in [start, end], in time order."""
    zone = ZoneInfo(schedule_timezone(schedule))
    lo, hi = start.isoformat(), end.isoformat()
    instants, keys = schedule_table(schedule)
    return [
        Tick(datetime.fromtimestamp(ns / 1e9, tz=zone), key)
        for ns, key in zip(instants, keys, strict=True)
        if lo <= key <= hi
    ]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ns(moment: datetime) -> int:
    """Exact epoch nanoseconds of an aware time (a float timestamp * 1e9 rounds by ~100 ns)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _tick(schedule: Schedule, instants: tuple[int, ...], keys: tuple[str, ...], i: int) -> Tick:
    zone = ZoneInfo(schedule_timezone(schedule))
    seconds, ns = divmod(instants[i], 1_000_000_000)
    when = datetime.fromtimestamp(seconds, tz=zone) + timedelta(microseconds=ns // 1000)
    return Tick(when, keys[i])


def ticks_after(schedule: Schedule, after: datetime, count: int) -> list[Tick]:
    """The first `count` fire times strictly after `after`; fewer near the end of the
    sessions the calendar knows (about a year ahead, see sessions.py)."""
    instants, keys = schedule_table(schedule)
    start = bisect_right(instants, _epoch_ns(after))
    return [_tick(schedule, instants, keys, i) for i in range(start, min(start + count, len(keys)))]


def latest_tick(schedule: Schedule, at_or_before: datetime) -> Tick | None:
    """The newest fire time <= `at_or_before` (None before the calendar's first session)."""
    instants, keys = schedule_table(schedule)
    index = bisect_right(instants, _epoch_ns(at_or_before)) - 1
    return _tick(schedule, instants, keys, index) if index >= 0 else None


def last_tick(schedule: Schedule) -> Tick:
    """The last fire time the calendar knows: beyond it no fire time can be computed."""
    instants, keys = schedule_table(schedule)
    return _tick(schedule, instants, keys, len(keys) - 1)
