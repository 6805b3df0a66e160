"""A gateway job on a trading calendar fires when a spec's `schedule` block would (issue 21, 1).

The expected instants are computed here from exchange-calendars itself (its session opens and
closes, built independently of quantos_assets.calendars), so the evidence does not rest on the
code under test: the US Thanksgiving week 2026 (no session on Nov 26, a 13:00 close on Nov 27)
and the week of the 2026 March DST change (Sunday Mar 8).
"""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from quantos_assets.calendars.ticks import ticks_between
from quantos_assets.spec.models import Schedule
from quantos_assets.stores.job_store import NewJob
from quantos_assets.stores.job_timing import (
    RecurrenceError,
    check_at,
    check_calendar,
    latest_due_fire,
    next_fires,
)

NY = ZoneInfo("America/New_York")


def _exchange_calendars_xnys():  # a calendar of its own: not the cached one under test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import exchange_calendars

        return exchange_calendars.get_calendar("XNYS", start="2025-01-01")


XNYS = _exchange_calendars_xnys()


def _sessions(first: str, last: str) -> list[date]:
    return [ts.date() for ts in XNYS.sessions_in_range(first, last)]


def _close(day: date) -> datetime:
    return XNYS.session_close(day.isoformat()).to_pydatetime()


def _open(day: date) -> datetime:
    return XNYS.session_open(day.isoformat()).to_pydatetime()


def job(
    at: str | None, start: datetime, calendar: str | None = "XNYS", cron: str | None = None
) -> NewJob:
    return NewJob(
        team="research",
        actor="t",
        type="pipeline",
        pipeline_id="p",
        spec_sha256="a" * 64,
        runtime_params={},
        nodes=[],
        description="",
        execution_time=start.timestamp(),
        cron=cron,
        timezone="America/New_York",
        calendar=calendar,
        calendar_at=at,
    )


def _fires(made: NewJob, after: datetime, count: int) -> list[datetime]:
    return [datetime.fromtimestamp(f, NY) for f in next_fires(made, after.timestamp(), count)]


def test_thanksgiving_week_2026_close_plus_30m_is_each_sessions_close_plus_30m() -> None:
    monday = datetime(2026, 11, 23, tzinfo=NY)
    sessions = _sessions("2026-11-23", "2026-12-01")
    expected = [_close(s) + timedelta(minutes=30) for s in sessions]

    fired = _fires(job("close+30m", monday), monday, len(expected))

    assert fired == expected
    assert date(2026, 11, 26) not in {f.date() for f in fired}  # the holiday: no fire
    assert [f.isoformat() for f in fired[2:4]] == [
        "2026-11-25T16:30:00-05:00",
        "2026-11-27T13:30:00-05:00",  # the 13:00 early close, +30m
    ]
    # the spec schedule block with the same calendar and `at` has the same ticks
    spec = Schedule(calendar="XNYS", at="close+30m")
    assert [t.time for t in ticks_between(spec, sessions[0], sessions[-1])] == fired


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("open-15m", lambda s: _open(s) - timedelta(minutes=15)),
        ("close+30m", lambda s: _close(s) + timedelta(minutes=30)),
        ("09:00", lambda s: datetime.combine(s, datetime.min.time(), NY).replace(hour=9)),
    ],
)
def test_the_2026_march_dst_change_moves_no_fire_off_its_session_time(at, expected) -> None:
    """Before Sunday Mar 8 New York is UTC-5, after it UTC-4: the same local time each day."""
    thursday = datetime(2026, 3, 5, tzinfo=NY)
    sessions = _sessions("2026-03-05", "2026-03-12")
    fired = _fires(job(at, thursday), thursday, len(sessions))
    assert fired == [expected(s) for s in sessions]
    assert {f.astimezone(NY).strftime("%H:%M") for f in fired} == {
        expected(sessions[0]).astimezone(NY).strftime("%H:%M")
    }
    assert {f.utcoffset() for f in fired} == {timedelta(hours=-5), timedelta(hours=-4)}


def test_the_latest_due_fire_is_the_last_session_time_passed_and_never_before_the_start() -> None:
    monday = datetime(2026, 11, 23, tzinfo=NY)
    made = job("close+30m", monday)
    early_close = _close(date(2026, 11, 27)) + timedelta(minutes=30)
    for now, due in [
        (
            datetime(2026, 11, 26, 23, 0, tzinfo=NY),
            _close(date(2026, 11, 25)) + timedelta(minutes=30),
        ),
        (early_close - timedelta(seconds=1), _close(date(2026, 11, 25)) + timedelta(minutes=30)),
        (early_close, early_close),
        (datetime(2026, 11, 29, 12, 0, tzinfo=NY), early_close),  # the weekend
    ]:
        assert latest_due_fire(made, now.timestamp()) == due.timestamp(), now
    # nothing before the execution time, though sessions closed before it
    assert latest_due_fire(made, datetime(2026, 11, 23, 12, 0, tzinfo=NY).timestamp()) is None


def test_a_cron_job_lists_its_next_fire_times_too_and_knows_no_holiday() -> None:
    monday = datetime(2026, 11, 23, tzinfo=NY)
    made = job(None, monday, calendar=None, cron="30 16 * * 1-5")
    fired = _fires(made, monday, 5)
    assert [f.isoformat() for f in fired] == [
        "2026-11-23T16:30:00-05:00",
        "2026-11-24T16:30:00-05:00",
        "2026-11-25T16:30:00-05:00",
        "2026-11-26T16:30:00-05:00",  # Thanksgiving: a cron fires anyway
        "2026-11-27T16:30:00-05:00",
    ]
    once = job(None, monday, calendar=None)
    assert next_fires(once, monday.timestamp() - 1, 5) == [monday.timestamp()]
    assert next_fires(once, monday.timestamp(), 5) == []


def test_a_first_fire_past_the_sessions_the_calendar_knows_is_an_error_not_never() -> None:
    far = datetime.now(UTC) + timedelta(days=3 * 365)
    with pytest.raises(RecurrenceError, match=r"no XNYS session after .* is known yet"):
        next_fires(job("close+30m", far), far.timestamp(), 1)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_calendar, "XNYZ", "unknown exchange calendar 'XNYZ' (close matches: "),
        (check_at, "close+30x", "invalid market time 'close+30x'"),
        (check_at, "open-25h", "more than a day"),
        (check_at, "25:00", "not a valid time of day"),
    ],
)
def test_a_calendar_or_market_time_a_spec_refuses_a_job_refuses_with_the_same_line(
    check, value: str, message: str
) -> None:
    with pytest.raises(RecurrenceError) as err:
        check(value)
    assert message in str(err.value) and "\n" not in str(err.value)
