"""Calendar jobs in the gateway's store and fired by the code location's `gateway_jobs` sensor
(issue 21, point 1), on SQLite and on the real PostgreSQL.

The sensor is driven through a US Thanksgiving week tick by tick, as the daemon would evaluate
it: the job fires once per session at that session's close+30m (13:30 New York on the early
close of Nov 27, nothing on Nov 26), each firing once, however many ticks see it due.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance, Definitions, build_sensor_context
from postgres_db import PG_URL, fresh_database
from team_specs import TWO_TEAMS, team_spec

from quantos_assets.calendars.sessions import exchange_calendar
from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.stores.job_store import JobChanges, JobStore, NewJob, ScheduledJob
from quantos_assets.stores.job_timing import JobRecurrence
from quantos_assets.tenancy.teams import load_teams
from resources.profile import Profile, active_profile, build_resources
from resources.run_tag_keys import TAG_JOB, TAG_TEAM
from resources.sql_store import store_engine
from sensors.gateway_jobs import build_gateway_jobs_sensor, evaluate_jobs, fire_key
from sensors.run_usage import InstanceUsage, gateway_store

NY = ZoneInfo("America/New_York")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        with fresh_database("quantos_caljobs_test") as db:
            yield PG_URL.format(db=db)


@pytest.fixture
def profile(tmp_path: Path, store_url: str) -> Profile:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "alpha_daily.yaml").write_text(yaml.safe_dump(team_spec("alpha_daily", "alpha")))
    (tmp_path / "teams.yaml").write_text(TWO_TEAMS)
    return active_profile(
        {
            "QUANTOS_ENV": "local",
            "QUANTOS_DATA_DIR": str(tmp_path / "data"),
            "QUANTOS_SPECS_DIR": str(specs),
            "QUANTOS_TEAMS": str(tmp_path / "teams.yaml"),
            "QUANTOS_GATEWAY_DB": store_url,
        }
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as made:
        yield made


def _calendar_job(store: JobStore, start: datetime, at: str = "close+30m") -> ScheduledJob:
    return store.create(
        NewJob(
            team="alpha",
            actor="t",
            type="pipeline",
            pipeline_id="alpha_daily",
            spec_sha256="a" * 64,
            runtime_params={},
            nodes=[],
            description="after the close",
            execution_time=start.timestamp(),
            cron=None,
            timezone="America/New_York",
            calendar="XNYS",
            calendar_at=at,
        )
    )


def _pipeline(profile: Profile) -> PipelineDefs:
    return build_pipeline(load_spec(profile.specs_dir / "alpha_daily.yaml"), profile)


def test_a_calendar_job_round_trips_and_a_recurrence_edit_replaces_the_whole_of_it(
    store_url: str,
) -> None:
    store = JobStore.from_url(store_url)
    made = _calendar_job(store, datetime(2026, 11, 23, tzinfo=NY))
    read = store.get(made.id)
    assert read is not None and read.problem is None and read.recurring
    assert (read.cron, read.calendar, read.calendar_at, read.timezone) == (
        None,
        "XNYS",
        "close+30m",
        "America/New_York",
    )
    as_cron = store.update(
        made.id, JobChanges(recurrence=JobRecurrence(cron="30 16 * * 1-5", timezone="UTC"))
    )
    assert (as_cron.cron, as_cron.calendar, as_cron.calendar_at, as_cron.timezone) == (
        "30 16 * * 1-5",
        None,
        None,
        "UTC",
    )
    once = store.update(made.id, JobChanges(recurrence=JobRecurrence(timezone="UTC")))
    assert not once.recurring and once.problem is None


def test_a_store_made_before_calendar_jobs_gets_the_columns_and_keeps_its_rows(
    store_url: str,
) -> None:
    """The table as the previous release created it (no calendar columns), with a cron row:
    opening the store adds nullable columns; the old row reads as before."""
    engine = store_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE gateway_jobs (id VARCHAR(64) PRIMARY KEY, team VARCHAR(200) NOT NULL, "
            "actor VARCHAR(64) NOT NULL, type VARCHAR(60) NOT NULL, pipeline_id VARCHAR(128) "
            "NOT NULL, spec_sha256 VARCHAR(64) NOT NULL, runtime_params TEXT NOT NULL, nodes "
            "TEXT NOT NULL, description TEXT NOT NULL, execution_time FLOAT NOT NULL, cron "
            "VARCHAR(120), timezone VARCHAR(64) NOT NULL, canceled BOOLEAN NOT NULL, created_at "
            "FLOAT NOT NULL, updated_at FLOAT NOT NULL, note TEXT)"
        )
        conn.execute(
            sa.text(
                "INSERT INTO gateway_jobs VALUES ('job-old', 'alpha', 't', 'pipeline', "
                "'alpha_daily', :sha, '{}', '[]', '', 1790000000.0, '30 16 * * 1-5', "
                "'America/New_York', false, 1.0, 1.0, NULL)"
            ),
            {"sha": "a" * 64},
        )
    store = JobStore.from_url(store_url)
    columns = {c["name"]: c for c in sa.inspect(store.engine).get_columns("gateway_jobs")}
    assert columns["calendar"]["nullable"] and columns["calendar_at"]["nullable"]
    old = store.get("job-old")
    assert old is not None and old.problem is None
    assert (old.cron, old.calendar, old.calendar_at) == ("30 16 * * 1-5", None, None)
    made = _calendar_job(store, datetime(2026, 11, 23, tzinfo=NY))
    assert [j.id for j in store.list("alpha")] == ["job-old", made.id]
    JobStore.from_url(store_url)  # opening it again adds nothing twice


def test_a_calendar_row_that_cannot_fire_is_marked_and_fires_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    store = JobStore.from_url(url)
    made = _calendar_job(store, datetime(2026, 11, 23, tzinfo=NY))
    for sql, problem in [
        ("calendar = 'XNYZ'", "unknown exchange calendar 'XNYZ'"),
        ("calendar = 'XNYS', calendar_at = 'close+30x'", "invalid market time 'close+30x'"),
        ("calendar_at = NULL", "a calendar recurrence without calendar_at"),
        ("calendar_at = 'close', cron = '0 9 * * *'", "both a cron ('0 9 * * *') and a calendar"),
    ]:
        with sqlite3.connect(tmp_path / "gateway.db") as conn:
            conn.execute(f"UPDATE gateway_jobs SET {sql} WHERE id = ?", (made.id,))
        read = store.get(made.id)
        assert read is not None and problem in (read.problem or ""), (sql, read)


def test_the_sensor_fires_a_calendar_job_once_per_session_over_thanksgiving_week(
    profile: Profile, instance: DagsterInstance
) -> None:
    store = JobStore(gateway_store(profile.gateway_store_url).engine)
    job = _calendar_job(store, datetime(2026, 11, 25, 12, 0, tzinfo=NY))
    teams = load_teams(profile.teams_file, required=True)
    runnable = {"alpha_daily": _pipeline(profile)}
    cursor: dict[str, float] = {}
    fired: list[tuple[datetime, str]] = []  # (tick, run key)
    tick_at = datetime(2026, 11, 25, 12, 0, tzinfo=NY)
    while tick_at < datetime(2026, 11, 30, 17, 0, tzinfo=NY):  # a tick every 5 minutes
        usage = InstanceUsage(instance, gateway_store(profile.gateway_store_url))
        tick = evaluate_jobs(profile, teams, runnable, usage, cursor, tick_at.timestamp())
        assert tick.problems == [] and tick.waiting == [], tick
        fired += [(tick_at, r.run_key or "") for r in tick.requests]
        tick_at += timedelta(minutes=5)

    xnys = exchange_calendar("XNYS")
    sessions = [date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30)]
    due = [
        (xnys.session_close(s.isoformat()) + timedelta(minutes=30)).to_pydatetime()
        for s in sessions
    ]
    assert [key for _, key in fired] == [fire_key(job, d.timestamp()) for d in due]
    # each at the first tick at or after its fire time: 16:30, 13:30 (early close), 16:30
    assert [t for t, _ in fired] == [d.astimezone(NY) for d in due]
    assert [t.strftime("%m-%d %H:%M") for t, _ in fired] == [
        "11-25 16:30",
        "11-27 13:30",
        "11-30 16:30",
    ]


def test_the_gateway_jobs_sensor_requests_a_calendar_firing_once(
    profile: Profile, instance: DagsterInstance
) -> None:
    """The sensor definition itself, evaluated as the daemon does (its cursor handed from tick
    to tick): the due firing is one run request keyed job@fire-time; the next ticks skip it."""
    store = JobStore(gateway_store(profile.gateway_store_url).engine)
    job = _calendar_job(store, datetime(2026, 11, 27, 9, 0, tzinfo=NY))
    now = datetime(2026, 11, 27, 13, 30, 20, tzinfo=NY)
    pipeline = _pipeline(profile)
    sensor = build_gateway_jobs_sensor([pipeline], profile, clock=lambda: now.timestamp())
    assert sensor is not None
    repo = Definitions(
        assets=pipeline.assets,
        jobs=[pipeline.job],
        sensors=[sensor],
        resources=build_resources(profile),
    ).get_repository_def()

    first = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repo))
    [request] = first.run_requests or []
    early_close = datetime(2026, 11, 27, 13, 30, tzinfo=NY).timestamp()
    assert request.run_key == fire_key(job, early_close) == f"{job.id}@20261127T183000Z"
    assert request.tags[TAG_JOB] == job.id and request.tags[TAG_TEAM] == "alpha"
    assert json.loads(first.cursor or "{}") == {job.id: early_close}

    cursor = first.cursor
    for later in (20, 300, 3600):  # ticks after it, same day: nothing more is due
        now = datetime(2026, 11, 27, 13, 30, 20, tzinfo=NY) + timedelta(seconds=later)
        again = sensor.evaluate_tick(
            build_sensor_context(instance=instance, repository_def=repo, cursor=cursor)
        )
        assert not again.run_requests and again.skip_message == "no scheduled job is due"
        cursor = again.cursor
