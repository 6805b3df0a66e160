"""Calendar-aware freshness: what is due comes from the exchange calendar, not the clock.

Monday morning does not alarm about the weekend, Thanksgiving does not alarm about
itself, a deadline follows the early close, and a London holiday is not a US one.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from quantos_assets.calendars.freshness import evaluate_freshness, session_of
from quantos_assets.spec.models import Freshness

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LAG_1 = Freshness(max_lag_sessions=1)
LAG_0 = Freshness(max_lag_sessions=0)
DEADLINE = Freshness(deadline="close+2h")


def at(y: int, m: int, d: int, hh: int, mm: int = 0, tz: ZoneInfo = NY) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def test_monday_morning_is_fresh_with_fridays_session() -> None:
    verdict = evaluate_freshness(LAG_0, "XNYS", date(2026, 11, 20), at(2026, 11, 23, 8))
    assert verdict.fresh, verdict.reason
    assert verdict.due_session == date(2026, 11, 20) and verdict.lag_sessions == 0


def test_thanksgiving_does_not_count_as_a_missing_session() -> None:
    verdict = evaluate_freshness(LAG_0, "XNYS", date(2026, 11, 25), at(2026, 11, 26, 18))
    assert verdict.fresh, verdict.reason
    # The next day's session closes at 13:00: from then on the 25th is one behind.
    after_early_close = evaluate_freshness(
        LAG_0, "XNYS", date(2026, 11, 25), at(2026, 11, 27, 13, 5)
    )
    assert not after_early_close.fresh
    assert after_early_close.lag_sessions == 1 and "2026-11-27 closed" in after_early_close.reason


def test_lag_counts_sessions_not_days_across_a_holiday_weekend() -> None:
    # Holds Friday 2016-01-15; MLK Monday and the weekend are not sessions: one behind on Tuesday
    # night.
    verdict = evaluate_freshness(LAG_1, "XNYS", date(2016, 1, 15), at(2016, 1, 19, 17))
    assert verdict.fresh and verdict.lag_sessions == 1, verdict.reason
    two_behind = evaluate_freshness(LAG_1, "XNYS", date(2016, 1, 15), at(2016, 1, 20, 17))
    assert not two_behind.fresh and two_behind.lag_sessions == 2
    assert "at most 1 allowed" in two_behind.reason


def test_deadline_follows_the_early_close() -> None:
    # 2026-11-27 closes 13:00, so close+2h is 15:00 New York, not 18:00.
    before = evaluate_freshness(DEADLINE, "XNYS", date(2026, 11, 25), at(2026, 11, 27, 14, 59))
    assert before.fresh, before.reason
    after = evaluate_freshness(DEADLINE, "XNYS", date(2026, 11, 25), at(2026, 11, 27, 15, 1))
    assert not after.fresh and after.overdue_session == date(2026, 11, 27)
    assert "2026-11-27T15:00-05:00" in after.reason


@pytest.mark.parametrize(
    ("now", "fresh"),
    [
        # DST starts 2026-03-08: Monday 03-09 closes 16:00 EDT = 20:00 UTC; deadline 18:00 EDT.
        (datetime(2026, 3, 9, 21, 59, tzinfo=ZoneInfo("UTC")), True),
        (datetime(2026, 3, 9, 22, 1, tzinfo=ZoneInfo("UTC")), False),
        # DST ends 2026-11-01: Monday 11-02 closes 16:00 EST = 21:00 UTC; deadline 23:00 UTC.
        (datetime(2026, 11, 2, 22, 59, tzinfo=ZoneInfo("UTC")), True),
        (datetime(2026, 11, 2, 23, 1, tzinfo=ZoneInfo("UTC")), False),
    ],
)
def test_deadline_moves_with_dst(now: datetime, fresh: bool) -> None:
    previous = date(2026, 3, 6) if now.month == 3 else date(2026, 10, 30)
    assert evaluate_freshness(DEADLINE, "XNYS", previous, now).fresh is fresh


def test_london_bank_holiday_is_not_a_missing_session_in_london_only() -> None:
    # 2016-08-29 is the UK summer bank holiday; NYSE was open that day.
    london = evaluate_freshness(LAG_0, "XLON", date(2016, 8, 26), at(2016, 8, 29, 20, tz=LONDON))
    assert london.fresh, london.reason
    new_york = evaluate_freshness(LAG_0, "XNYS", date(2016, 8, 26), at(2016, 8, 29, 20))
    assert not new_york.fresh and new_york.lag_sessions == 1


def test_never_materialized_is_stale_unless_nothing_is_due_yet() -> None:
    never = evaluate_freshness(LAG_1, "XNYS", None, at(2026, 11, 23, 17))
    assert not never.fresh and "never materialized" in never.reason
    # Partitions start on 2026-12-01: nothing is due before that session closes.
    early = evaluate_freshness(
        LAG_1, "XNYS", None, at(2026, 11, 30, 17), first_due=date(2026, 12, 1)
    )
    assert early.fresh and early.due_session is None


def test_a_materialization_counts_for_its_trading_date() -> None:
    assert session_of("XNYS", at(2026, 11, 23, 8)) == date(2026, 11, 23)  # pre-open run: that day
    assert session_of("XNYS", at(2026, 11, 26, 12)) == date(
        2026, 11, 25
    )  # on Thanksgiving: the day before
    assert session_of("XNYS", at(2026, 11, 29, 12)) == date(2026, 11, 27)  # Sunday: Friday
