"""How stale an asset is, counted in exchange sessions (the spec's `freshness` block).

Dagster's own freshness checks count wall-clock time from a cron, so every Monday
morning they alarm about the weekend and every holiday about the day before. Here
what is *due* comes from the calendar:

- `max_lag_sessions: N` - sessions whose close has passed are due; the asset may be
  at most N of them behind.
- `deadline: close+2h` - a session's data is due by that market-relative time;
  once it has passed, that session must be there.

What an asset *holds* is its newest session partition, or, unpartitioned, the
trading date of its latest materialization (the session on or before that date in
the exchange's timezone, so a pre-open run and an after-close run both count for
their day).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from quantos_assets.calendars.sessions import (
    exchange_calendar,
    exchange_timezone,
    is_session,
    previous_session,
    sessions_between,
)
from quantos_assets.calendars.ticks import fire_table
from quantos_assets.spec.models import Freshness

_NS = 1_000_000_000


@dataclass(frozen=True)
class FreshnessVerdict:
    """The outcome for one asset at one instant; `reason` is the line operators read."""

    fresh: bool
    reason: str
    latest_session: date | None  # what the asset holds
    due_session: date | None  # newest session whose close has passed
    lag_sessions: int | None  # due sessions missing (None: never materialized)
    overdue_session: date | None = None  # the session whose deadline was missed

    def key(self) -> tuple[bool, str | None, str | None]:
        """What must change for the verdict to be news (sensor cursor)."""
        return (
            self.fresh,
            self.due_session.isoformat() if self.due_session else None,
            self.latest_session.isoformat() if self.latest_session else None,
        )


def _last_at_or_before(calendar: str, at: str, now: datetime) -> date | None:
    """The newest session whose `at` instant is <= now."""
    instants, keys = fire_table(calendar, at)
    index = bisect_right(instants, int(now.timestamp() * _NS)) - 1
    return date.fromisoformat(keys[index]) if index >= 0 else None


def session_of(calendar: str, moment: datetime) -> date:
    """The trading date a materialization at `moment` counts for."""
    day = moment.astimezone(ZoneInfo(exchange_timezone(calendar))).date()
    return day if is_session(calendar, day) else previous_session(calendar, day)


def evaluate_freshness(
    freshness: Freshness,
    calendar: str,
    latest: date | None,
    now: datetime,
    first_due: date | None = None,
) -> FreshnessVerdict:
    """Judge an asset holding `latest` at `now`; sessions before `first_due`
    (the partitions' start) are never due."""
    exchange_calendar(calendar)  # fail early on an unknown code
    due = _last_at_or_before(calendar, "close", now)
    if due is not None and first_due is not None and due < first_due:
        due = None
    if due is None:
        return FreshnessVerdict(True, "no session is due yet", latest, None, 0)

    if latest is None:
        lag = None
    else:
        lag = sum(1 for s in sessions_between(calendar, latest, due) if s > latest)
    problems: list[str] = []
    if freshness.max_lag_sessions is not None:
        if lag is None:
            problems.append(f"never materialized; session {due.isoformat()} is due")
        elif lag > freshness.max_lag_sessions:
            problems.append(
                f"{lag} sessions behind (holds {latest.isoformat() if latest else '-'}, "
                f"{due.isoformat()} closed; at most {freshness.max_lag_sessions} allowed)"
            )
    overdue: date | None = None
    if freshness.deadline is not None:
        deadline_session = _last_at_or_before(calendar, freshness.deadline, now)
        if first_due is not None and deadline_session is not None and deadline_session < first_due:
            deadline_session = None
        if deadline_session is not None and (latest is None or latest < deadline_session):
            overdue = deadline_session
            problems.append(
                f"session {deadline_session.isoformat()} was due by {freshness.deadline} "
                f"({_deadline_instant(calendar, freshness.deadline, deadline_session)})"
            )
    if problems:
        return FreshnessVerdict(False, "; ".join(problems), latest, due, lag, overdue)
    held = latest.isoformat() if latest else "nothing"
    behind = "up to date" if not lag else f"{lag} session{'s' if lag > 1 else ''} behind"
    return FreshnessVerdict(
        True, f"holds {held}: {behind} (latest closed session {due.isoformat()})", latest, due, lag
    )


def _deadline_instant(calendar: str, at: str, session: date) -> str:
    instants, keys = fire_table(calendar, at)
    ns = instants[keys.index(session.isoformat())]
    zone = ZoneInfo(exchange_timezone(calendar))
    return datetime.fromtimestamp(ns / _NS, tz=zone).isoformat(timespec="minutes")
