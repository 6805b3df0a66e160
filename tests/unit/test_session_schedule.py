"""The Dagster schedule and partition sync built from a spec, evaluated at given times.

Evaluated with Dagster's own `build_schedule_context` on a real instance: a
tick is what the daemon would launch at that moment, no waiting on clocks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.test_utils import create_run_for_test
from profiles import LOCAL

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.kafka_client import KafkaSettings
from resources.profile import active_profile, build_resources
from sensors.registry import build_triggers
from sensors.session_schedule import build_session_schedule
from sensors.session_sync import build_session_sync

NY = ZoneInfo("America/New_York")
SPEC = """\
version: 1
pipeline_id: eod
schedule: {{calendar: XNYS, at: close+30m, catch_up: {catch_up}}}
partitions: {{calendar: XNYS, start: "2026-11-02"}}
nodes:
  - id: a
    kind: python_task
    params: {{entrypoint: "quantos_assets.tasks.noop:run"}}
    outs: [x]
"""


def pipeline(tmp_path: Path, catch_up: bool = False):
    path = tmp_path / "eod.yaml"
    path.write_text(SPEC.format(catch_up=str(catch_up).lower()))
    return build_pipeline(load_spec(path), LOCAL)


def evaluate(instance: DagsterInstance, pipe, at: datetime, now: datetime):
    schedule = build_session_schedule(pipe, clock=lambda: now)
    defs = Definitions(
        assets=pipe.assets,
        jobs=[pipe.job],
        schedules=[schedule],
        resources=build_resources(active_profile()),
    )
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
    )
    return schedule.evaluate_tick(context)


@pytest.fixture
def instance(data_dir: Path):
    with instance_for_test() as inst:
        yield inst


def test_cron_covers_regular_and_early_close_in_exchange_time(tmp_path: Path) -> None:
    schedule = build_session_schedule(pipeline(tmp_path))
    assert schedule.execution_timezone == "America/New_York"
    assert {"30 16 * * 1,2,3,4,5", "30 13 * * 1,2,3,4,5"} <= set(schedule.cron_schedule)


def test_early_close_tick_runs_its_session_partition(tmp_path: Path, instance) -> None:
    pipe = pipeline(tmp_path)
    at = datetime(2026, 11, 27, 13, 30, tzinfo=NY)
    result = evaluate(instance, pipe, at, now=at)
    [request] = result.run_requests
    assert request.partition_key == "2026-11-27" and request.run_key == "2026-11-27"
    # The tick registered its own session as a partition.
    assert instance.get_dynamic_partitions("eod__sessions") == ["2026-11-27"]


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 27, 16, 30, tzinfo=NY),  # regular close time on an early-close day
        datetime(2026, 11, 26, 16, 30, tzinfo=NY),  # Thanksgiving: cron fires, no session
        datetime(2026, 11, 25, 13, 30, tzinfo=NY),  # early-close cron on a regular day
    ],
)
def test_cron_ticks_that_are_no_session_fire_time_skip(
    tmp_path: Path, instance, at: datetime
) -> None:
    result = evaluate(instance, pipeline(tmp_path), at, now=at)
    assert not result.run_requests and "not a session fire time" in (result.skip_message or "")


def test_missed_tick_is_skipped_once_a_later_session_fired(tmp_path: Path, instance) -> None:
    at = datetime(2026, 11, 24, 16, 30, tzinfo=NY)
    after_next = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # 17:00 NY on the 25th
    result = evaluate(instance, pipeline(tmp_path), at, now=after_next)
    assert not result.run_requests and "stale tick for session 2026-11-24" in (
        result.skip_message or ""
    )
    # A late daemon that is still before the next fire time runs the latest session.
    late = datetime(2026, 11, 25, 12, 0, tzinfo=NY)
    [request] = evaluate(instance, pipeline(tmp_path), at, now=late).run_requests
    assert request.partition_key == "2026-11-24"


def test_catch_up_runs_missed_sessions(tmp_path: Path, instance) -> None:
    at = datetime(2026, 11, 24, 16, 30, tzinfo=NY)
    result = evaluate(
        instance, pipeline(tmp_path, catch_up=True), at, now=datetime(2026, 11, 30, tzinfo=NY)
    )
    # No earlier run of the schedule: nothing before it was turned on is run.
    assert [r.partition_key for r in result.run_requests] == ["2026-11-24"]

    # Its last run was for the 18th; the daemon was down until after the 24th's fire time.
    # Dagster evaluates only the latest missed tick: that tick runs every missed session.
    create_run_for_test(
        instance,
        job_name="eod",
        tags={"dagster/schedule_name": "eod__xnys_schedule", "quantos/session": "2026-11-18"},
    )
    result = evaluate(
        instance,
        pipeline(tmp_path, catch_up=True),
        at,
        now=datetime(2026, 11, 24, 17, 0, tzinfo=NY),
    )
    assert [r.partition_key for r in result.run_requests] == [
        "2026-11-19",
        "2026-11-20",
        "2026-11-23",
        "2026-11-24",
    ]
    assert all(
        r.run_key == r.partition_key for r in result.run_requests
    )  # Dagster drops repeats by run key
    assert {"2026-11-19", "2026-11-24"} <= set(instance.get_dynamic_partitions("eod__sessions"))
    # Without catch_up the same tick runs the latest session only.
    result = evaluate(
        instance, pipeline(tmp_path), at, now=datetime(2026, 11, 24, 17, 0, tzinfo=NY)
    )
    assert [r.partition_key for r in result.run_requests] == ["2026-11-24"]


def test_sync_sensor_adds_every_session_to_today(tmp_path: Path, instance) -> None:
    pipe = pipeline(tmp_path)
    sensor = build_session_sync(pipe, clock=lambda: datetime(2026, 11, 30, 12, 0, tzinfo=NY))
    result = sensor.evaluate_tick(build_sensor_context(instance=instance))
    [request] = result.dynamic_partitions_requests or []
    keys = list(request.partition_keys)
    assert keys[0] == "2026-11-02" and keys[-1] == "2026-11-30"
    assert "2026-11-26" not in keys and "2026-11-28" not in keys and len(keys) == 20


def test_registry_builds_one_schedule_and_one_sync_per_calendar_spec(tmp_path: Path) -> None:
    names = sorted(
        t.name for t in build_triggers([pipeline(tmp_path)], KafkaSettings(bootstrap=None))
    )
    assert names == ["eod__sessions_sync", "eod__xnys_schedule"]
