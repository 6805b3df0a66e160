"""Calendar-gated branching for node code (seed 002's IsTradingSession/IsTradingHoliday).

The Airflow DAGs branched on "is this day a session? a holiday?" with custom
operators; here a node asks once and decides itself, with the same cached
calendar the schedules use, so a node and its schedule never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from quantos_assets.calendars.sessions import exchange_calendar, is_session, previous_session


@dataclass(frozen=True)
class SessionDay:
    """What the calendar says about one date."""

    day: date
    is_session: bool
    is_holiday: bool  # a regular or ad-hoc holiday on a weekday, not a weekend
    is_early_close: bool
    previous_session: date


def session_day(calendar: str, day: date | str) -> SessionDay:
    """Everything a gate needs about `day` on `calendar` (codes as in the spec)."""
    when = date.fromisoformat(day) if isinstance(day, str) else day
    cal = exchange_calendar(calendar)
    session = is_session(calendar, when)
    weekday_open = (
        bool(cal.weekmask[when.weekday()] == "1")
        if isinstance(cal.weekmask, str)
        else when.weekday() < 5
    )
    early = False
    if session:
        import pandas as pd

        early = pd.Timestamp(when) in cal.early_closes
    return SessionDay(
        day=when,
        is_session=session,
        is_holiday=weekday_open and not session,
        is_early_close=early,
        previous_session=previous_session(calendar, when),
    )
