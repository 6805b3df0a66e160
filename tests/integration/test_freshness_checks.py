"""The example EOD pipeline's freshness, judged on a real instance by its checks and sensor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    build_sensor_context,
    define_asset_job,
    materialize,
)
from profiles import LOCAL

from definitions.assemble import definitions_for
from quantos_assets.calendars.partitions import partitions_name
from quantos_assets.freshness_checks import CHECK_NAME
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile, build_resources
from sensors.freshness import build_freshness_sensor

REPO = Path(__file__).resolve().parents[2]
EOD = REPO / "specs" / "xs_daily_eod.yaml"
NY = ZoneInfo("America/New_York")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _evaluations(events: Sequence[object]) -> list[AssetCheckEvaluation]:
    """A freshness tick records check evaluations only."""
    assert all(isinstance(e, AssetCheckEvaluation) for e in events), events
    return [e for e in events if isinstance(e, AssetCheckEvaluation)]


def test_sensor_records_stale_then_fresh_only_when_the_verdict_changes(data_dir: Path) -> None:
    pipeline = build_pipeline(load_spec(EOD), LOCAL)
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(
        partitions_name(pipeline.spec), ["2026-11-24", "2026-11-25", "2026-11-27"]
    )
    resources = build_resources(active_profile())
    assert materialize(
        pipeline.assets, partition_key="2026-11-24", instance=instance, resources=resources
    ).success

    # Thanksgiving evening: only the 25th has closed since; max_lag_sessions 1 holds,
    # but the 25th's close+2h deadline (18:00) has passed.
    clock = Clock(datetime(2026, 11, 26, 19, 0, tzinfo=NY))
    sensor = build_freshness_sensor(pipeline, clock=clock)
    first = sensor.evaluate_tick(build_sensor_context(instance=instance))
    evaluations = {e.asset_key.path[-1]: e for e in _evaluations(first.asset_events)}
    assert set(evaluations) == {"bars", "eod_summary"}
    assert all(e.check_name == CHECK_NAME and not e.passed for e in evaluations.values())
    assert "session 2026-11-25 was due by close+2h (2026-11-25T18:00-05:00)" in (
        evaluations["bars"].description or ""
    )

    # Same verdict on the next tick: nothing recorded again.
    again = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor))
    assert (
        not again.asset_events
        and again.skip_message
        and "2 of 2 assets stale" in again.skip_message
    )

    assert materialize(
        pipeline.assets, partition_key="2026-11-25", instance=instance, resources=resources
    ).success
    fixed = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor))
    assert {e.asset_key.path[-1] for e in fixed.asset_events} == {"bars", "eod_summary"}
    assert all(e.passed for e in _evaluations(fixed.asset_events))

    # Monday morning after the long weekend: the 27th (early close) is due and there;
    # Saturday and Sunday are not sessions, so nothing is late.
    assert materialize(
        pipeline.assets, partition_key="2026-11-27", instance=instance, resources=resources
    ).success
    clock.now = datetime(2026, 11, 30, 8, 0, tzinfo=NY)
    monday = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=fixed.cursor))
    assert all(e.passed for e in _evaluations(monday.asset_events)), [
        e.description for e in _evaluations(monday.asset_events)
    ]


def test_checks_run_from_a_job_like_the_ui_does(data_dir: Path) -> None:
    """Executing the checks (the UI's "Execute checks") stores the same verdicts, and the
    pipeline's own job does not run them (they judge the calendar, not one run)."""
    pipeline = build_pipeline(load_spec(EOD), LOCAL)
    assert pipeline.checks, "a spec with freshness gets checks"
    defs = Definitions.merge(
        definitions_for([pipeline], active_profile()),
        Definitions(
            jobs=[define_asset_job("freshness_only", selection=AssetSelection.all_asset_checks())]
        ),
    )
    key = AssetCheckKey(pipeline.assets[0].key, CHECK_NAME)
    assert (
        key
        not in defs.resolve_job_def(
            pipeline.spec.pipeline_id
        ).asset_layer.asset_graph.asset_check_keys
    )

    instance = DagsterInstance.get()
    result = defs.resolve_job_def("freshness_only").execute_in_process(instance=instance)
    assert result.success
    evaluations = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"bars", "eod_summary"}
    assert not evaluations["bars"].passed and "never materialized" in (
        evaluations["bars"].description or ""
    )
    stored = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert stored is not None and stored.run_id == result.run_id
