"""The fire times of a spec's schedule: one per session, at the market-relative time.

Shared by `quantos ticks` (the preview users check before deploying) and the
Dagster schedule (which maps a cron tick back to its session), so what the
preview shows is what the daemon launches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
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
