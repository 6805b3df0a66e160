"""Exchange sessions, market-relative fire times and calendar gates, against real calendars.

Evidence the issue asks for: XNYS 2016 (seed 002's holiday table), XNYS 2026
(Thanksgiving and the early close after it), both DST transitions, and XLON.
"""

from __future__ import annotations

from datetime import UTC, date

import pytest

from quantos_assets.calendars.gates import session_day
from quantos_assets.calendars.sessions import (
    exchange_calendar,
    fire_time,
    is_session,
    previous_session,
    sessions_between,
)
from quantos_assets.calendars.ticks import ticks_between
from quantos_assets.spec.market_time import parse_market_time
from quantos_assets.spec.models import Schedule

CLOSE_30 = parse_market_time("close+30m")


@pytest.mark.parametrize(
    "day", ["2016-01-01", "2016-01-18", "2016-02-15", "2016-03-25", "2016-05-30", "2016-07-04"]
)
def test_seed_002_holidays_2016_are_not_sessions(day: str) -> None:
    assert not is_session("XNYS", date.fromisoformat(day))
    assert session_day("XNYS", day).is_holiday


@pytest.mark.parametrize("day", ["2016-03-24", "2016-05-27", "2016-07-01"])
def test_seed_002_open_days_2016_are_sessions(day: str) -> None:
    assert is_session("XNYS", date.fromisoformat(day))


def test_sessions_of_2016_have_no_weekend_or_holiday() -> None:
    days = sessions_between("XNYS", date(2016, 1, 1), date(2016, 12, 31))
    assert len(days) == 252
    assert all(d.weekday() < 5 for d in days)
    assert date(2016, 11, 24) not in days and date(2016, 12, 26) not in days


def test_close_plus_30m_follows_the_early_close_after_thanksgiving() -> None:
    fired = fire_time("XNYS", date(2026, 11, 27), CLOSE_30)
    assert fired.isoformat() == "2026-11-27T13:30:00-05:00"
    assert (
        fire_time("XNYS", date(2026, 11, 25), CLOSE_30).isoformat() == "2026-11-25T16:30:00-05:00"
    )
    assert not is_session("XNYS", date(2026, 11, 26))
    gate = session_day("XNYS", "2026-11-27")
    assert gate.is_early_close and gate.previous_session == date(2026, 11, 25)


@pytest.mark.parametrize(
    ("day", "utc"),
    [
        ("2026-03-06", "2026-03-06T21:30:00+00:00"),  # EST, the Friday before DST
        ("2026-03-09", "2026-03-09T20:30:00+00:00"),  # EDT, the Monday after
        ("2026-10-30", "2026-10-30T20:30:00+00:00"),  # EDT, the Friday before it ends
        ("2026-11-02", "2026-11-02T21:30:00+00:00"),  # EST again
    ],
)
def test_market_time_stays_1630_new_york_across_dst(day: str, utc: str) -> None:
    fired = fire_time("XNYS", date.fromisoformat(day), CLOSE_30)
    assert fired.strftime("%H:%M") == "16:30"
    assert fired.astimezone(UTC).isoformat() == utc


def test_london_sessions_early_close_and_bst() -> None:
    assert str(exchange_calendar("XLON").tz) == "Europe/London"
    december = sessions_between("XLON", date(2026, 12, 21), date(2026, 12, 31))
    assert date(2026, 12, 25) not in december and date(2026, 12, 28) not in december
    assert (
        fire_time("XLON", date(2026, 12, 24), parse_market_time("close")).strftime("%H:%M")
        == "12:30"
    )
    before = fire_time("XLON", date(2026, 3, 27), parse_market_time("close"), "UTC")
    after = fire_time("XLON", date(2026, 3, 30), parse_market_time("close"), "UTC")
    assert (before.hour, before.minute) == (16, 30) and (after.hour, after.minute) == (15, 30)


def test_previous_session_skips_weekends_and_holidays() -> None:
    assert previous_session("XNYS", date(2016, 1, 19)) == date(2016, 1, 15)
    assert previous_session("XNYS", date(2016, 1, 18)) == date(2016, 1, 15)
    weekend = session_day("XNYS", date(2016, 1, 16))
    assert not weekend.is_session and not weekend.is_holiday


def test_wall_clock_schedule_fires_at_that_time_on_sessions_only() -> None:
    ticks = ticks_between(
        Schedule(calendar="XNYS", at="09:00"), date(2016, 1, 15), date(2016, 1, 19)
    )
    assert [(t.time.isoformat(), t.partition) for t in ticks] == [
        ("2016-01-15T09:00:00-05:00", "2016-01-15"),
        ("2016-01-19T09:00:00-05:00", "2016-01-19"),
    ]


def test_a_year_of_ticks_matches_the_sessions_and_closes_exactly() -> None:
    cal = exchange_calendar("XNYS")
    ticks = ticks_between(
        Schedule(calendar="XNYS", at="close+30m"), date(2026, 1, 1), date(2026, 12, 31)
    )
    sessions = sessions_between("XNYS", date(2026, 1, 1), date(2026, 12, 31))
    assert [t.partition for t in ticks] == [d.isoformat() for d in sessions]
    for tick in ticks:
        close = cal.session_close(tick.partition).to_pydatetime()
        assert (tick.time - close).total_seconds() == 1800


@pytest.mark.parametrize(
    ("text", "shown"),
    [("close+30m", "close+30m"), ("open-1h", "open-1h"), ("close", "close"), ("09:00", "09:00")],
)
def test_market_time_forms(text: str, shown: str) -> None:
    assert str(parse_market_time(text)) == shown


@pytest.mark.parametrize("text", ["close+30", "noon", "close+30s", "25:00", "open+2d"])
def test_market_time_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="market time|time of day"):
        parse_market_time(text)


def test_tokyo_has_no_session_on_new_year_holidays() -> None:
    assert not is_session("XTKS", date(2026, 1, 2))
    assert is_session("XTKS", date(2026, 1, 5))
    assert exchange_calendar("XTKS").last_session.date() > date.today()
