"""Backfilling a range of sessions of the example EOD spec runs exactly the sessions.

Real parts: the synced dynamic partitions in a real instance, the python_task
through dagster-pipes, the SQL rollup on DuckDB, Iceberg tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterInstance, build_sensor_context, materialize
from profiles import LOCAL

from quantos_assets.calendars.partitions import partitions_name
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile, build_resources
from sensors.session_sync import build_session_sync

REPO = Path(__file__).resolve().parents[2]
EOD = REPO / "specs" / "xs_daily_eod.yaml"


def test_backfill_of_a_range_runs_each_session_and_skips_the_holiday(data_dir: Path) -> None:
    pipeline = build_pipeline(load_spec(EOD), LOCAL)
    instance = DagsterInstance.get()
    sync = build_session_sync(
        pipeline, clock=lambda: datetime(2016, 2, 1, tzinfo=ZoneInfo("America/New_York"))
    )
    [request] = (
        sync.evaluate_tick(build_sensor_context(instance=instance)).dynamic_partitions_requests
        or []
    )
    instance.add_dynamic_partitions(partitions_name(pipeline.spec), list(request.partition_keys))
    # The partition range a backfill of 2016-01-14...2016-01-20 covers (keys are in session order).
    every = instance.get_dynamic_partitions(partitions_name(pipeline.spec))
    keys = every[every.index("2016-01-14") : every.index("2016-01-20") + 1]
    assert keys == [
        "2016-01-14",
        "2016-01-15",
        "2016-01-19",
        "2016-01-20",
    ]  # not MLK day, not the weekend

    resources = build_resources(active_profile())
    for key in keys:
        result = materialize(
            pipeline.assets, partition_key=key, instance=instance, resources=resources
        )
        assert result.success

    summary = instance.get_materialized_partitions(pipeline.assets[1].key)
    assert summary == set(keys)
    event = instance.get_latest_materialization_event(pipeline.assets[1].key)
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.partition == "2016-01-20"


RANGE = ("2016-01-14", "2016-01-20")  # MLK day (Jan 18) and a weekend inside
RANGE_SESSIONS = ["2016-01-14", "2016-01-15", "2016-01-19", "2016-01-20"]


def _synced_instance(pipeline) -> DagsterInstance:
    from quantos_assets.calendars.partitions import missing_session_keys

    instance = DagsterInstance.get()
    name = partitions_name(pipeline.spec)
    instance.add_dynamic_partitions(
        name,
        missing_session_keys(pipeline.spec, set(), datetime(2016, 2, 1, tzinfo=ZoneInfo("UTC"))),
    )
    return instance


def test_single_run_backfill_computes_each_session_of_the_range_in_one_run(
    data_dir: Path, tmp_path: Path
) -> None:
    """With partitions.backfill: single_run a range is ONE run; every session in it is
    computed on its own (the python_task gets each session) and stored under its key."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    text = (
        EOD.read_text()
        .replace("pipeline_id: xs_daily_eod", "pipeline_id: eod_ranged")
        .replace('  start: "2016-01-04"', '  start: "2016-01-04"\n  backfill: single_run')
    )
    spec_path = tmp_path / "eod_ranged.yaml"
    spec_path.write_text(text)
    pipeline = build_pipeline(load_spec(spec_path), LOCAL)
    instance = _synced_instance(pipeline)
    resources = build_resources(active_profile())

    result = materialize(
        pipeline.assets,
        instance=instance,
        resources=resources,
        tags={ASSET_PARTITION_RANGE_START_TAG: RANGE[0], ASSET_PARTITION_RANGE_END_TAG: RANGE[1]},
    )
    assert result.success
    assert len(instance.get_run_records()) == 1
    bars_key, summary_key = (a.key for a in pipeline.assets)
    assert instance.get_materialized_partitions(bars_key) == set(RANGE_SESSIONS)
    assert instance.get_materialized_partitions(summary_key) == set(RANGE_SESSIONS)

    io = resources["io_manager"]
    bars = io.read_arrow("eod_ranged", "bars", None).to_pandas()
    # Each session's rows were computed for that session, not for the range.
    assert (bars["session"] == bars["partition_key"]).all()
    assert sorted(bars["session"].unique()) == RANGE_SESSIONS
    summary = io.read_arrow("eod_ranged", "eod_summary", None).to_pandas().set_index("session")
    assert list(summary.index) == RANGE_SESSIONS
    assert summary["avg_close"].to_dict() == pytest.approx(
        bars.groupby("session")["close"].mean().to_dict()
    )

    # Re-running one session alone replaces only that session's rows.
    again = materialize(
        pipeline.assets, partition_key="2016-01-15", instance=instance, resources=resources
    )
    assert again.success
    assert len(io.read_arrow("eod_ranged", "bars", None)) == len(bars)


def test_cli_partition_range_is_one_run_over_the_sessions(data_dir: Path) -> None:
    """`quantos sessions sync` then `dagster asset materialize --partition-range`: the
    single_run rollup of the example runs once over exactly the range's sessions."""
    env = {**os.environ, "QUANTOS_DBT": "off"}  # the dbt models are tested in test_dbt_models.py
    sync = subprocess.run(
        [sys.executable, "-m", "quantos_assets.apps.cli.main", "sessions", "sync", str(EOD)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr
    assert sync.stdout.startswith("xs_daily_eod: added ")
    pipeline = build_pipeline(load_spec(EOD), LOCAL)
    instance = DagsterInstance.get()
    resources = build_resources(active_profile())
    bars_def = pipeline.assets[0]
    for key in RANGE_SESSIONS:  # the per-session upstream, one run each
        assert materialize(
            [bars_def], partition_key=key, instance=instance, resources=resources
        ).success
    before = len(instance.get_run_records())

    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "definitions.definitions",
            "--select",
            "xs_daily_eod/eod_summary",
            "--partition-range",
            f"{RANGE[0]}...{RANGE[1]}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    instance = DagsterInstance.get()
    assert len(instance.get_run_records()) == before + 1
    summary_key = pipeline.assets[1].key
    assert instance.get_materialized_partitions(summary_key) == set(RANGE_SESSIONS)
    rows = resources["io_manager"].read_arrow("xs_daily_eod", "eod_summary", None).to_pandas()
    assert sorted(rows["session"]) == RANGE_SESSIONS and (rows["symbols"] == 5).all()
