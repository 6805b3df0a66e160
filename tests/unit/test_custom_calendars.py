"""Custom trading calendars from YAML (issue 21, point 4), with deploy/calendars/sifma_us.yaml.

The 2026 SIFMA dates are written out here, not computed by the code under test: the calendar
built from the file must give exactly these holidays and early closes. SIFMA's full 2026 list
(issued 2025-12-17) could not be read from here: New Year's Day, MLK Day, Presidents Day, the
12:00 Good Friday close and the regular Thursday before it are from published sources (named
per date below and in the YAML's comments), the rest from SIFMA's standing rules. A spec and
a gateway job naming `SIFMA_US` then schedule and partition around Thanksgiving 2026 like any
exchange code, and bad calendar files are one `FILE:LINE: field: message` line each.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from dagster import Definitions, build_schedule_context, instance_for_test
from profiles import LOCAL

from quantos_assets.apps.gateway.job_views import job_view
from quantos_assets.calendars.calendar_files import CalendarFileError, load_calendar_files
from quantos_assets.calendars.freshness import evaluate_freshness
from quantos_assets.calendars.gates import session_day
from quantos_assets.calendars.partitions import session_keys
from quantos_assets.calendars.sessions import exchange_calendar, exchange_codes
from quantos_assets.calendars.ticks import ticks_between
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.models import Freshness
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.stores.job_store import JobStore, NewJob
from quantos_assets.stores.job_timing import RecurrenceError, check_calendar
from resources.profile import active_profile, build_resources
from sensors.session_schedule import build_session_schedule

NY = ZoneInfo("America/New_York")

# SIFMA's 2026 U.S. recommendations: full market closes (weekdays only). "verified" dates
# are in SIFMA_2026_PUBLISHED below with their source; the others follow SIFMA's standing
# rules and no published 2026 source for them could be read.
SIFMA_2026_HOLIDAYS = [
    "2026-01-01",  # New Year's Day (verified)
    "2026-01-19",  # Martin Luther King Jr. Day (verified)
    "2026-02-16",  # Presidents Day (verified)
    "2026-05-25",  # Memorial Day
    "2026-06-19",  # Juneteenth
    "2026-07-03",  # Independence Day (observed; July 4 is a Saturday)
    "2026-09-07",  # Labor Day
    "2026-10-12",  # Columbus Day
    "2026-11-11",  # Veterans Day
    "2026-11-26",  # Thanksgiving
    "2026-12-25",  # Christmas
]
# ... and early closes, New York time. Good Friday (Apr 3) is a noon close, not a holiday:
# the BLS employment report is released that morning; the Thursday before (Apr 2) is a
# regular session (verified, below).
SIFMA_2026_EARLY_CLOSES = {
    "2026-04-03": "12:00",  # verified
    "2026-05-22": "14:00",
    "2026-07-02": "14:00",
    "2026-11-27": "14:00",
    "2026-12-24": "14:00",
    "2026-12-31": "14:00",
}

# The 2026 days a published source states, as (date, close in New York or None for a full
# close). Sources (full addresses in the YAML's header):
MV_20251212 = "mondovisione.com/...-in-the-us-the-uk-and-japan-20251212/"  # SIFMA, New Year
MV_20260105 = "mondovisione.com/...-in-the-us-the-uk-and-japan-202616/"  # SIFMA, MLK Day
HT_20260216 = "hindustantimes.com/...presidents-day-2026-...-101771227500612.html"  # press
PUBT_20260320 = "pubt.io/view/2C489A7219297D4B8D44A290947D6C90F9714B6B"  # SIFMA, Good Friday
SIFMA_2026_PUBLISHED = [
    # "a full market close on Thursday, January 1, 2026"
    ("2026-01-01", None, MV_20251212),
    # "a full market close on Monday, January 19", no early close named before it
    ("2026-01-16", "17:00", MV_20260105),
    ("2026-01-19", None, MV_20260105),
    # "The bond market is also shut for the holiday" (a press report, not SIFMA's text)
    ("2026-02-16", None, HT_20260216),
    # U.S. part of the release in full: "an early close at 12:00 p.m. EST on Friday,
    # April 3, 2026"; it names no early close on Thursday April 2 (nor did 2021's
    # employment-report Good Friday have one: Kiplinger's 2021 list on nasdaq.com)
    ("2026-04-02", "17:00", PUBT_20260320),
    ("2026-04-03", "12:00", PUBT_20260320),
]


def _weekdays_2026() -> list[date]:
    return [
        d
        for d in (
            date.fromordinal(n)
            for n in range(date(2026, 1, 1).toordinal(), date(2027, 1, 1).toordinal())
        )
        if d.weekday() < 5
    ]


def test_sifma_2026_holidays_and_early_closes_are_the_published_ones() -> None:
    cal = exchange_calendar("SIFMA_US")
    closed = [d.isoformat() for d in _weekdays_2026() if not cal.is_session(d.isoformat())]
    assert closed == SIFMA_2026_HOLIDAYS
    early = {
        s.date().isoformat(): cal.session_close(s).tz_convert(NY).strftime("%H:%M")
        for s in cal.sessions_in_range("2026-01-01", "2026-12-31")
        if cal.session_close(s).tz_convert(NY).strftime("%H:%M") != "17:00"
    }
    assert early == SIFMA_2026_EARLY_CLOSES
    # every session opens at 08:00 New York time, winter and summer
    opens = {
        cal.session_open(s).tz_convert(NY).strftime("%H:%M")
        for s in cal.sessions_in_range("2026-01-01", "2026-12-31")
    }
    assert opens == {"08:00"}
    # the gates see the same days
    assert session_day("SIFMA_US", "2026-11-26").is_holiday
    assert session_day("SIFMA_US", "2026-11-27").is_early_close


def test_sifma_2026_days_stated_by_a_published_source() -> None:
    cal = exchange_calendar("SIFMA_US")
    for day, close, source in SIFMA_2026_PUBLISHED:
        if close is None:
            assert not cal.is_session(day), (day, source)
        else:
            assert cal.is_session(day), (day, source)
            got = cal.session_close(day).tz_convert(NY).strftime("%H:%M")
            assert got == close, (day, source)
            assert cal.session_open(day).tz_convert(NY).strftime("%H:%M") == "08:00"
    # and the full-year lists the test above checks agree with these days
    published = {day: close for day, close, _ in SIFMA_2026_PUBLISHED}
    assert {d for d, c in published.items() if c is None} <= set(SIFMA_2026_HOLIDAYS)
    for day, close in published.items():
        if close not in (None, "17:00"):
            assert SIFMA_2026_EARLY_CLOSES[day] == close
        elif close == "17:00":
            assert day not in SIFMA_2026_EARLY_CLOSES and day not in SIFMA_2026_HOLIDAYS


def test_the_sifma_calendar_claims_no_session_past_the_years_its_list_covers() -> None:
    cal = exchange_calendar("SIFMA_US")
    assert cal.first_session.date() == date(2024, 1, 2)
    assert cal.last_session.date() == date(2027, 12, 31)


SPEC = """\
version: 1
pipeline_id: bonds_eod
schedule: {calendar: SIFMA_US, at: close+30m}
partitions: {calendar: SIFMA_US, start: "2026-11-02"}
nodes:
  - id: a
    kind: python_task
    params: {entrypoint: "quantos_assets.tasks.noop:run"}
    outs: [x]
"""


def test_a_spec_on_sifma_schedules_and_partitions_around_thanksgiving_2026(tmp_path: Path) -> None:
    path = tmp_path / "bonds_eod.yaml"
    path.write_text(SPEC)
    spec = load_spec(path).spec
    assert spec.schedule is not None
    ticks = ticks_between(spec.schedule, date(2026, 11, 23), date(2026, 12, 1))
    assert [(t.partition, t.time.isoformat()) for t in ticks] == [
        ("2026-11-23", "2026-11-23T17:30:00-05:00"),
        ("2026-11-24", "2026-11-24T17:30:00-05:00"),
        ("2026-11-25", "2026-11-25T17:30:00-05:00"),
        ("2026-11-27", "2026-11-27T14:30:00-05:00"),  # the 2 p.m. close, + 30m
        ("2026-11-30", "2026-11-30T17:30:00-05:00"),
        ("2026-12-01", "2026-12-01T17:30:00-05:00"),
    ]
    keys = session_keys(spec, end=date(2026, 11, 30))
    assert keys[-6:] == [
        "2026-11-20",
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
        "2026-11-27",
        "2026-11-30",
    ]
    assert "2026-11-11" not in keys  # Veterans Day: the bond market closes, NYSE does not
    # freshness counts the same sessions: the Nov 27 session is due from its 14:00 close
    held = date(2026, 11, 25)
    lag = Freshness(max_lag_sessions=0)
    before = evaluate_freshness(lag, "SIFMA_US", held, datetime(2026, 11, 27, 13, 59, tzinfo=NY))
    after = evaluate_freshness(lag, "SIFMA_US", held, datetime(2026, 11, 27, 14, 1, tzinfo=NY))
    assert (before.fresh, before.due_session) == (True, date(2026, 11, 25))
    assert (after.fresh, after.due_session, after.lag_sessions) == (False, date(2026, 11, 27), 1)


def _fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def test_the_dagster_schedule_of_a_sifma_spec_runs_the_early_close_session(
    tmp_path: Path, data_dir: Path
) -> None:
    path = tmp_path / "bonds_eod.yaml"
    path.write_text(SPEC)
    pipe = build_pipeline(load_spec(path), LOCAL)
    schedule = build_session_schedule(pipe)
    assert schedule.execution_timezone == "America/New_York"
    # 17:30 every weekday; 14:30 on the weekdays some early close falls on (never a Monday
    # in 2024-2027); 12:30 for the noon close of Good Friday 2026
    assert schedule.cron_schedule == ["30 12 * * 5", "30 14 * * 2,3,4,5", "30 17 * * 1,2,3,4,5"]
    defs = Definitions(
        assets=pipe.assets,
        jobs=[pipe.job],
        schedules=[schedule],
        resources=build_resources(active_profile()),
    )
    with instance_for_test() as instance:
        ticks = {}
        for at in (
            datetime(2026, 11, 27, 14, 30, tzinfo=NY),  # the early close + 30m
            datetime(2026, 11, 26, 17, 30, tzinfo=NY),  # Thanksgiving: no session
        ):
            context = build_schedule_context(
                instance=instance,
                scheduled_execution_time=at,
                repository_def=defs.get_repository_def(),
            )
            clock = _fixed(at)  # the daemon's clock at the tick
            ticks[at.day] = build_session_schedule(pipe, clock=clock).evaluate_tick(context)
    assert [r.partition_key for r in ticks[27].run_requests or []] == ["2026-11-27"]
    assert not ticks[26].run_requests


def test_a_gateway_job_on_sifma_lists_its_next_fire_times(tmp_path: Path) -> None:
    store = JobStore(sa.create_engine(f"sqlite:///{tmp_path / 'gateway.db'}"))
    job = store.create(
        NewJob(
            team="research",
            actor="t",
            type="pipeline",
            pipeline_id="bonds_eod",
            spec_sha256="a" * 64,
            runtime_params={},
            nodes=[],
            description="",
            execution_time=datetime(2026, 11, 20, tzinfo=UTC).timestamp(),
            cron=None,
            timezone="America/New_York",
            calendar="SIFMA_US",
            calendar_at="close-1h",
        )
    )
    now = datetime(2026, 11, 25, 17, 0, tzinfo=NY).timestamp()  # after that day's fire
    view = job_view(None, job, now, runs=[])  # type: ignore[arg-type]  # runs given: no Dagster
    assert view.error is None
    assert view.next_fires == [
        "2026-11-27T13:00:00-05:00",
        "2026-11-30T16:00:00-05:00",
        "2026-12-01T16:00:00-05:00",
        "2026-12-02T16:00:00-05:00",
        "2026-12-03T16:00:00-05:00",
    ]


def test_an_unknown_code_is_still_the_clear_error_in_a_spec_and_a_job(tmp_path: Path) -> None:
    with pytest.raises(
        RecurrenceError, match=r"unknown exchange calendar 'SIFMA_UK' \(close matches: SIFMA_US"
    ):
        check_calendar("SIFMA_UK")
    path = tmp_path / "p.yaml"
    path.write_text(SPEC.replace("schedule: {calendar: SIFMA_US", "schedule: {calendar: SIFMA_UK"))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    line = f"{path}:3: schedule.calendar: unknown exchange calendar 'SIFMA_UK' (close matches: "
    assert str(err.value).startswith(line + "SIFMA_US")


GOOD = """\
code: DESK_X
timezone: America/New_York
open: "08:00"
close: "17:00"
holidays:
  - {date: 2026-11-26, name: Thanksgiving}
early_closes:
  - {date: 2026-11-27, close: "14:00", name: Day after}
"""


def _load(tmp_path: Path, *texts: str) -> str:
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        paths.append(path)
    with pytest.raises(CalendarFileError) as err:
        load_calendar_files(paths, exchange_codes())
    return str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("2026-11-26", "2026-02-30"),
            "c0.yaml:6: holidays[0].date: ",
        ),
        (
            GOOD.replace("timezone:", "sessions: 1\ntimezone:"),
            "c0.yaml:2: sessions: unknown field 'sessions'",
        ),
        (
            GOOD.replace("2026-11-27", "2026-11-26"),
            "c0.yaml:8: early_closes[0].date: 2026-11-26 is also a holiday (holidays[0], Thanks",
        ),
        (GOOD.replace("DESK_X", "XNYS"), "c0.yaml:1: code: 'XNYS' is an exchange-calendars code"),
        (
            GOOD.replace('close: "14:00"', 'close: "18:00"'),
            "c0.yaml:8: early_closes[0].close: 18:00 is not between open 08:00 and close 17:00",
        ),
        (
            GOOD.replace("code: DESK_X\n", "code: DESK_X\ncode: DESK_Y\n"),
            "c0.yaml:2: code: duplicate key 'code'",
        ),
        ("code: [unclosed\n", "c0.yaml:2: <root>: invalid YAML"),
    ],
)
def test_a_bad_calendar_file_is_one_line_naming_file_line_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = _load(tmp_path, text)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(str(tmp_path / expected.split(":")[0])) and expected in message, (
        message
    )


def test_a_code_defined_twice_names_the_first_file(tmp_path: Path) -> None:
    message = _load(tmp_path, GOOD, GOOD.replace("America/New_York", "Europe/London"))
    assert message == (
        f"{tmp_path / 'c1.yaml'}:1: code: 'DESK_X' is already defined in {tmp_path / 'c0.yaml'}:1"
    )


def test_a_bad_calendar_directory_is_named_where_a_custom_code_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "desk.yaml").write_text(GOOD.replace("2026-11-26", "2026-02-30"))
    monkeypatch.setenv("QUANTOS_CALENDARS_DIR", str(tmp_path))
    with pytest.raises(RecurrenceError) as err:
        check_calendar("DESK_X")
    assert (
        f"the custom calendars cannot be read: {tmp_path / 'desk.yaml'}:6: holidays[0].date"
        in str(err.value)
    )
    assert check_calendar("XNYS") == "XNYS"  # exchange codes never depend on the files
    monkeypatch.setenv("QUANTOS_CALENDARS_DIR", str(tmp_path / "unmounted"))
    with pytest.raises(RecurrenceError) as err:
        check_calendar("SIFMA_US")
    assert f"QUANTOS_CALENDARS_DIR: {tmp_path / 'unmounted'} is not a directory" in str(err.value)
