"""Backfilling a range of sessions of the example EOD spec runs exactly the sessions.

Real parts: the synced dynamic partitions in a real instance, the python_task
through dagster-pipes, the SQL rollup on DuckDB, Iceberg tables.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import DagsterInstance, build_sensor_context, materialize

from quantos_assets.calendars.partitions import partitions_name
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec.loader import load_spec
from resources.profile import active_profile, build_resources
from sensors.session_sync import build_session_sync

REPO = Path(__file__).resolve().parents[2]
EOD = REPO / "specs" / "xs_daily_eod.yaml"


def test_backfill_of_a_range_runs_each_session_and_skips_the_holiday(data_dir: Path) -> None:
    pipeline = build_pipeline(load_spec(EOD))
    instance = DagsterInstance.get()
    sync = build_session_sync(pipeline, clock=lambda: datetime(2016, 2, 1, tzinfo=ZoneInfo("America/New_York")))
    instance.add_dynamic_partitions(
        partitions_name(pipeline.spec),
        list(sync.evaluate_tick(build_sensor_context(instance=instance)).dynamic_partitions_requests[0].partition_keys),
    )
    # The partition range a backfill of 2016-01-14...2016-01-20 covers (keys are in session order).
    every = instance.get_dynamic_partitions(partitions_name(pipeline.spec))
    keys = every[every.index("2016-01-14") : every.index("2016-01-20") + 1]
    assert keys == ["2016-01-14", "2016-01-15", "2016-01-19", "2016-01-20"]  # not MLK day, not the weekend

    resources = build_resources(active_profile())
    for key in keys:
        result = materialize(pipeline.assets, partition_key=key, instance=instance, resources=resources)
        assert result.success

    summary = instance.get_materialized_partitions(pipeline.assets[1].key)
    assert summary == set(keys)
    event = instance.get_latest_materialization_event(pipeline.assets[1].key)
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.partition == "2016-01-20"
