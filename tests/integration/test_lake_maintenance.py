"""A lake that keeps itself (issue 19, point 3): expired snapshots are gone with their files,
pinned ones are kept (a queued run's ref, a running step's ref, a promoted model's training
data, what the next read gets), small session files are compacted and the table reads the
same, orphans go, ttl_days removes what a run wrote; every action is in the audit trail.

Real parts: the pipelines run through Dagster into a PyIceberg SQL catalog and a file
warehouse; the runs, pins and materializations are in a real Dagster instance; the trail is
the gateway's hash-chained store.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import DagsterInstance
from lake_demo import Lake, refs_tags, release

from quantos_assets.apps.cli.main import main
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.derived_names import LAKE_JOB, LAKE_SCHEDULE
from quantos_assets.spec.loader import load_runtime_params
from resources.iceberg_maintenance import pin_tags, release_pin, run_pin
from resources.iceberg_tables import read_table, write_table
from resources.lake_upkeep_settings import LakeUpkeep
from resources.run_tag_keys import TAG_PIPELINE

pytestmark = pytest.mark.integration


def test_expiry_keeps_what_is_pinned_and_deletes_the_rest_with_its_files(data_dir: Path) -> None:
    lake = Lake(data_dir)
    for _ in range(4):
        lake.run()
    s1, s2, s3, s4 = lake.snapshots("prices")
    # A backtest that ran on s2 and finished: its step pinned s2 while it ran.
    finished = lake.run(["signal"], refs_tags(s2))
    assert pin_tags(lake.catalog.load_table(("lake_demo", "prices"))) == {run_pin(finished): s2}
    # A backtest on s1 still queued: nothing of it ran yet.
    with DagsterInstance.get() as instance:
        queued = instance.create_run_for_job(lake.job, tags=refs_tags(s1)).run_id
    s1_rows = read_table(lake.catalog, ("lake_demo", "prices"), s1)
    files_before = lake.files("prices")

    report = lake.maintain()

    assert not report.problems
    # s1: the queued run's ref; s4: current and what the next read gets. s2's run is over.
    assert lake.snapshots("prices") == [s1, s4]
    assert pin_tags(lake.catalog.load_table(("lake_demo", "prices"))) == {run_pin(queued): s1}
    assert read_table(lake.catalog, ("lake_demo", "prices"), s1).equals(s1_rows)
    # the files only s2 and s3 named are gone from storage; s1's and s4's are all there
    gone = files_before - lake.files("prices")
    assert gone and all(p.exists() for p in lake.files("prices"))
    assert {p.suffix for p in gone} >= {".parquet", ".avro"}
    trail = [(r.action, r.decision, r.subject) for r in lake.trail()]
    assert ("lake.pin", "done", "lake_demo.prices") in trail
    assert ("lake.unpin", "done", "lake_demo.prices") in trail
    assert ("lake.expire", "done", "lake_demo.prices") in trail
    assert ("lake.expire", "kept", "lake_demo.prices") in trail
    expired = next(
        r
        for r in lake.trail()
        if (r.action, r.decision) == ("lake.expire", "done") and r.subject == "lake_demo.prices"
    )
    assert json.loads(expired.params)["snapshot_ids"] == sorted([s2, s3])
    assert expired.team == "quant-eq" and expired.actor == "quantos-lake"
    assert lake.resources["audit"].log().verify().ok

    # The queued run is now done: the next pass lets s1 go.
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(queued)
        assert run is not None
        instance.report_run_canceled(run)
    lake.maintain()
    assert lake.snapshots("prices") == [s4]
    assert pin_tags(lake.catalog.load_table(("lake_demo", "prices"))) == {}


def test_a_commits_own_expiry_never_removes_a_pinned_snapshot(data_dir: Path) -> None:
    lake = Lake(data_dir)
    lake.run(["prices"])
    first = lake.snapshots("prices")[0]
    running = lake.run(["signal"], refs_tags(first))  # its step tags `first`
    for _ in range(3):
        lake.run(["prices"])
    keep = 2
    table = ("lake_demo", "prices")
    rows = pa.table({"symbol": ["X"], "px": [1.0]})
    for _ in range(4):  # each commit expires all but `keep` snapshots
        write_table(lake.catalog, table, rows, None, snapshots_to_keep=keep)
    left = lake.snapshots("prices")
    assert first in left and len(left) == keep + 1
    assert pin_tags(lake.catalog.load_table(table)) == {run_pin(running): first}


def test_a_promoted_models_training_snapshot_is_pinned_by_its_stage(data_dir: Path) -> None:
    lake = Lake(data_dir)
    lake.run()
    lake.run()
    trained_on, current = lake.snapshots("prices")
    card = {
        "training_data": {"input": "prices", "table": "lake_demo.prices", "snapshot_id": trained_on}
    }
    release(lake, "prod", card, model_uri="file:///m")
    report = lake.maintain()
    assert not report.problems
    assert lake.snapshots("prices") == [trained_on, current]
    assert pin_tags(lake.catalog.load_table(("lake_demo", "prices"))) == {
        release_pin("lake_demo", "prod"): trained_on
    }
    pinned = [r for r in lake.trail() if r.action == "lake.pin"]
    assert "training data of lake_demo's prod model" in pinned[0].detail


def test_session_appends_are_compacted_and_read_the_same(data_dir: Path) -> None:
    lake = Lake(data_dir)
    lake.run()
    table_id = ("lake_demo", "ticks")
    day = "2026-12-04"
    write_table(lake.catalog, table_id, pa.table({"seq": [0], "px": [1.0]}), day)
    write_table(lake.catalog, table_id, pa.table({"seq": [0], "px": [9.0]}), "2026-12-03")
    table = lake.catalog.load_table(table_id)
    for i in range(1, 6):  # an intraday feed appending to today's session, a file each time
        table.append(
            pa.table({"seq": pa.array([i], pa.int64()), "px": [1.0 + i], "partition_key": [day]})
        )
    before = read_table(lake.catalog, table_id, None).sort_by("seq")
    before_snapshot = lake.snapshots("ticks")[-1]

    settings = LakeUpkeep(snapshot_days=7, orphan_grace_hours=24, compact_min_files=4)
    report = lake.maintain(settings)

    assert not report.problems
    after = read_table(lake.catalog, table_id, None).sort_by("seq")
    assert after.equals(before)
    table = lake.catalog.load_table(table_id)
    files = {task.file.file_path for task in table.scan().plan_files()}
    assert len(files) == 2  # one per session: 6 files of the 4th became one
    (compacted,) = [r for r in lake.trail() if r.action == "lake.compact"]
    assert compacted.detail == f"session {day}: 6 files rewritten as 1"
    # the snapshot before compaction still reads as it did (within retention)
    assert read_table(lake.catalog, table_id, before_snapshot).sort_by("seq").equals(before)
    # a second pass finds nothing left to compact
    lake.maintain(settings)
    assert len([r for r in lake.trail() if r.action == "lake.compact"]) == 1


def test_orphans_past_their_grace_are_removed_and_fresh_ones_kept(data_dir: Path) -> None:
    lake = Lake(data_dir)
    lake.run()
    data = Path(lake.profile.data_dir) / "warehouse" / "lake_demo" / "prices" / "data"
    old, fresh = data / "crashed-writer-old.parquet", data / "in-flight-writer.parquet"
    old.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 10)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    committed = lake.files("prices") - {old, fresh}

    lake.maintain(LakeUpkeep(snapshot_days=7, orphan_grace_hours=24))

    assert not old.exists() and fresh.exists()
    assert all(p.exists() for p in committed)
    (orphans,) = [r for r in lake.trail() if r.action == "lake.orphans"]
    assert orphans.detail == "1 orphaned file(s) (100 bytes) deleted"


def test_ttl_days_removes_what_the_run_wrote_once_they_passed(data_dir: Path) -> None:
    lake = Lake(data_dir)
    keeper = lake.run()  # no ttl: never touched
    params = load_runtime_params({"submission_id": "bt-short", "ttl_days": 3})
    short = lake.run(["signal"], runtime_run_tags(params) | {TAG_PIPELINE: "lake_demo"})
    (s_keep, s_short) = lake.snapshots("signal")
    settings = LakeUpkeep(snapshot_days=30, orphan_grace_hours=24)

    lake.maintain(settings, datetime.now(UTC) + timedelta(days=2))  # not yet
    assert lake.snapshots("signal") == [s_keep, s_short]

    lake.maintain(settings, datetime.now(UTC) + timedelta(days=4))
    # its rows are gone, its snapshot expired; the run without ttl still has its snapshot
    assert read_table(lake.catalog, ("lake_demo", "signal"), None).num_rows == 0
    assert s_short not in lake.snapshots("signal") and s_keep in lake.snapshots("signal")
    assert lake.snapshots("prices")  # the upstream, written by the run without ttl
    ttl = [r for r in lake.trail() if r.action == "lake.ttl"]
    assert ttl and ttl[0].detail == f"every row of run {short} deleted: ttl_days 3 passed"
    with DagsterInstance.get() as instance:
        handled, untouched = instance.get_run_by_id(short), instance.get_run_by_id(keeper)
        assert handled is not None and untouched is not None
        assert "quantos/ttl_expired" in handled.tags
        assert "quantos/ttl_expired" not in untouched.tags
    count = len(lake.trail())
    lake.maintain(settings, datetime.now(UTC) + timedelta(days=5))  # handled once
    assert len([r for r in lake.trail() if r.action == "lake.ttl"]) == len(ttl)
    assert len(lake.trail()) >= count


def test_the_daily_job_is_in_every_location_and_the_cli_runs_the_same_pass(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(data_dir)
    lake.run()
    lake.run()
    schedule = lake.defs.resolve_schedule_def(LAKE_SCHEDULE)
    assert schedule.cron_schedule == "30 6 * * *" and schedule.job_name == LAKE_JOB
    assert schedule.default_status.value == "RUNNING"
    monkeypatch.setenv("QUANTOS_LAKE_SNAPSHOT_DAYS", "0")
    monkeypatch.setenv("QUANTOS_SPECS_DIR", str(data_dir))
    capsys.readouterr()
    before = lake.snapshots("prices")
    assert main(["lake", "maintain", "--dry-run"]) == 0  # the plan: nothing done, nothing audited
    planned = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("lake.expire   planned  lake_demo.prices: 1 snapshot(s)")
        for line in planned
    ), planned
    assert lake.snapshots("prices") == before and not lake.trail()
    assert main(["lake", "maintain"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("lake.expire   done     lake_demo.prices: 1 snapshot(s)") for line in out
    ), out
    assert out[-1].endswith("over 1 pipeline(s)")
    assert main(["lake", "maintain", "--pipeline", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "quantos: --pipeline nope: no registered pipeline"
    # a team's tables only: the team of lake_demo, then one that owns nothing here
    assert main(["lake", "maintain", "--dry-run", "--team", "quant-eq"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("over 1 pipeline(s)")
    assert main(["lake", "maintain", "--team", "research"]) == 1
    assert capsys.readouterr().err.strip() == (
        "quantos: --team research: owns no registered pipeline"
    )

    lake.run()
    assert len(lake.snapshots("prices")) == 2
    lake = Lake(data_dir)  # the location as built with QUANTOS_LAKE_SNAPSHOT_DAYS=0
    with DagsterInstance.get() as instance:
        job = lake.defs.resolve_job_def(LAKE_JOB)
        assert job.execute_in_process(instance=instance).success
    assert len(lake.snapshots("prices")) == 1
