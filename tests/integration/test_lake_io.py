"""LakeIOManager against real engines: Dagster materializations, SQLite SqlCatalog, file
warehouse."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from resources.artifact import Artifact
from resources.artifact_store import ArtifactStore
from resources.iceberg_tables import LakeTableError, read_partitions, write_partitions
from resources.lake_io_manager import LakeIOManager

pytestmark = pytest.mark.integration

PIPE = "pipe1"


@pytest.fixture
def lake(tmp_path: Path) -> LakeIOManager:
    return LakeIOManager(
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=str(tmp_path / "warehouse"),
        artifact_store=ArtifactStore(root=str(tmp_path / "artifacts")),
    )


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def run(
    assets: list[Any],
    lake: LakeIOManager,
    instance: dg.DagsterInstance,
    **kwargs: Any,
) -> dg.ExecuteInJobResult:
    return dg.materialize(assets, resources={"io_manager": lake}, instance=instance, **kwargs)


def latest_metadata(instance: dg.DagsterInstance, name: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(dg.AssetKey([PIPE, name]))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_table_written_with_metadata(lake: LakeIOManager, instance: dg.DagsterInstance) -> None:
    @dg.asset(key_prefix=[PIPE])
    def prices() -> pa.Table:
        return pa.table({"symbol": ["A", "B", "C"], "px": [1.0, 2.0, 3.0]})

    assert run([prices], lake, instance).success
    meta = latest_metadata(instance, "prices")
    table = lake.catalog().load_table((PIPE, "prices"))
    assert meta["storage"] == "iceberg"
    assert meta["table"] == f"{PIPE}.prices"
    assert meta["rows"] == 3
    snapshot = table.current_snapshot()
    assert snapshot is not None and meta["snapshot_id"] == snapshot.snapshot_id
    assert [c.name for c in meta["schema"].columns] == ["symbol", "px"]
    assert table.scan().to_arrow().column("px").to_pylist() == [1.0, 2.0, 3.0]


def test_downstream_reads_recorded_snapshot_then_new_one(
    lake: LakeIOManager, instance: dg.DagsterInstance
) -> None:
    version = {"n": 1}
    seen: list[list[int]] = []

    @dg.asset(key_prefix=[PIPE])
    def raw() -> pa.Table:
        return pa.table({"x": list(range(version["n"] * 10, version["n"] * 10 + 3))})

    @dg.asset(key_prefix=[PIPE], ins={"raw": dg.AssetIn(key=[PIPE, "raw"])})
    def doubled(raw: pa.Table) -> pa.Table:
        seen.append(raw.column("x").to_pylist())
        return raw.set_column(0, "x", pa.array([v * 2 for v in raw.column("x").to_pylist()]))

    assert run([raw, doubled], lake, instance).success
    first = latest_metadata(instance, "raw")["snapshot_id"]
    assert seen[-1] == [10, 11, 12]

    # A commit nobody recorded in Dagster: the downstream must still read the recorded snapshot.
    lake.write_arrow(PIPE, "raw", pa.table({"x": [999]}))
    assert run([raw, doubled], lake, instance, selection=[doubled]).success
    assert seen[-1] == [10, 11, 12]

    version["n"] = 2
    assert run([raw], lake, instance).success
    second = latest_metadata(instance, "raw")["snapshot_id"]
    assert second != first
    assert run([raw, doubled], lake, instance, selection=[doubled]).success
    assert seen[-1] == [20, 21, 22]
    out = lake.read_arrow(PIPE, "doubled", latest_metadata(instance, "doubled")["snapshot_id"])
    assert out.column("x").to_pylist() == [40, 42, 44]


def test_a_run_reads_its_own_upstream_commit_recorded_on_loaded_input_only(
    lake: LakeIOManager, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps of one run in one process: the downstream reads the snapshot its run's upstream
    committed without an instance query, and the read is recorded on LOADED_INPUT, with no
    ASSET_OBSERVATION of the upstream repeating it (issue 19 point 4)."""

    @dg.asset(key_prefix=[PIPE])
    def raw() -> pa.Table:
        return pa.table({"x": [1, 2, 3]})

    @dg.asset(key_prefix=[PIPE], ins={"raw": dg.AssetIn(key=[PIPE, "raw"])})
    def total(raw: pa.Table) -> pa.Table:
        return pa.table({"x": [sum(raw.column("x").to_pylist())]})

    asked: list[dg.AssetKey] = []
    latest = dg.DagsterInstance.get_latest_materialization_event

    def counted(self: dg.DagsterInstance, key: dg.AssetKey) -> Any:
        asked.append(key)
        return latest(self, key)

    monkeypatch.setattr(dg.DagsterInstance, "get_latest_materialization_event", counted)
    result = run([raw, total], lake, instance)
    assert result.success
    assert asked == []
    loaded = [e for e in result.all_events if e.event_type_value == "LOADED_INPUT"]
    assert [{k: v.value for k, v in e.event_specific_data.metadata.items()} for e in loaded] == [
        {"table": f"{PIPE}.raw", "snapshot_id": latest_metadata(instance, "raw")["snapshot_id"]}
    ]
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert lake.read_arrow(PIPE, "total", None).column("x").to_pylist() == [6]


def test_ns_timestamps_stored_as_microseconds(
    lake: LakeIOManager, instance: dg.DagsterInstance
) -> None:
    ts = pd.to_datetime(["2024-01-02 09:30:00.123456789", "2024-01-02 16:00:00.000000000"])
    ts = ts.as_unit("ns")

    @dg.asset(key_prefix=[PIPE])
    def ticks() -> pd.DataFrame:
        return pd.DataFrame(
            {"ts": ts, "ts_ny": ts.tz_localize("America/New_York"), "px": [1.5, 2.5]}
        )

    assert run([ticks], lake, instance).success
    table = lake.catalog().load_table((PIPE, "ticks"))
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types == {"ts": "timestamp", "ts_ny": "timestamptz", "px": "double"}
    got = lake.read_arrow(PIPE, "ticks", latest_metadata(instance, "ticks")["snapshot_id"])
    assert got.schema.field("ts").type == pa.timestamp("us")
    assert got.schema.field("ts_ny").type == pa.timestamp("us", tz="UTC")
    assert got.column("ts")[0].as_py().microsecond == 123456
    assert got.column("ts_ny")[1].as_py() == ts[1].tz_localize("America/New_York").to_pydatetime()


def test_new_column_evolves_schema(lake: LakeIOManager, instance: dg.DagsterInstance) -> None:
    columns = {"a": [1, 2], "b": ["x", "y"]}

    @dg.asset(key_prefix=[PIPE])
    def features() -> pa.Table:
        return pa.table(columns)

    assert run([features], lake, instance).success
    columns["c"] = [0.5, 0.25]
    assert run([features], lake, instance).success
    meta = latest_metadata(instance, "features")
    assert [c.name for c in meta["schema"].columns] == ["a", "b", "c"]
    got = lake.read_arrow(PIPE, "features", meta["snapshot_id"])
    assert got.to_pydict() == {"a": [1, 2], "b": ["x", "y"], "c": [0.5, 0.25]}
    assert got.num_rows == 2  # unpartitioned materialization replaces the content


def test_artifacts_land_at_seed_paths(
    lake: LakeIOManager, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    model_bytes, report_bytes, file_bytes = b"\x00model", b"<html>report</html>", b"a,b\n1,2\n"
    loaded: dict[str, Artifact] = {}

    @dg.asset(key_prefix=[PIPE])
    def model() -> Artifact:
        return Artifact(model_bytes, role="model", filename="model.pkl")

    @dg.asset(key_prefix=[PIPE])
    def report() -> Artifact:
        return Artifact(report_bytes, role="report", filename="report.html")

    @dg.asset(key_prefix=[PIPE])
    def extract() -> Artifact:
        return Artifact(file_bytes, role="file", filename="extract.csv")

    @dg.asset(key_prefix=[PIPE], ins={"model": dg.AssetIn(key=[PIPE, "model"])})
    def scored(model: Artifact) -> pa.Table:
        loaded["model"] = model
        return pa.table({"n": [len(model.data)]})

    tags = {"quantos/version": "v3", "quantos/submission_id": "sub-42"}
    result = run([model, report, scored], lake, instance, tags=tags)
    assert result.success
    untagged = run([extract], lake, instance)
    root = tmp_path / "artifacts"
    expected = {
        "model": (root / f"models/{PIPE}/v3/model.pkl", model_bytes),
        "report": (root / "reports/sub-42/report.html", report_bytes),
        "extract": (root / f"files/{PIPE}/{untagged.run_id}/extract.csv", file_bytes),
    }
    for name, (path, data) in expected.items():
        meta = latest_metadata(instance, name)
        assert path.read_bytes() == data
        assert meta["uri"] == path.as_uri()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
        assert meta["bytes"] == len(data)
        assert meta["storage"] == "artifact"
    assert loaded["model"] == Artifact(model_bytes, role="model", filename="model.pkl")


def test_wrong_type_names_asset_and_type(lake: LakeIOManager, instance: dg.DagsterInstance) -> None:
    @dg.asset(key_prefix=[PIPE])
    def bad() -> dict:
        return {"not": "a table"}

    with pytest.raises(Exception, match=r"asset pipe1/bad: .* got builtins\.dict"):
        run([bad], lake, instance)


def test_never_materialized_upstream(lake: LakeIOManager, instance: dg.DagsterInstance) -> None:
    @dg.asset(key_prefix=[PIPE])
    def up() -> pa.Table:
        return pa.table({"x": [1]})

    @dg.asset(key_prefix=[PIPE], ins={"up": dg.AssetIn(key=[PIPE, "up"])})
    def down(up: pa.Table) -> pa.Table:
        return up

    with pytest.raises(Exception, match="upstream pipe1/up has never been materialized"):
        run([up, down], lake, instance, selection=[down])


def test_partitions_overwrite_only_their_key(
    lake: LakeIOManager, instance: dg.DagsterInstance
) -> None:
    parts = dg.StaticPartitionsDefinition(["2024-01-02", "2024-01-03"])
    scale = {"k": 1}
    per_key: dict[str, list[float]] = {}
    everything: list[pa.Table] = []

    @dg.asset(key_prefix=[PIPE], partitions_def=parts)
    def bars(context) -> pa.Table:
        day = int(context.partition_key[-1])
        return pa.table({"px": [day * scale["k"] + 0.5, day * scale["k"] + 0.25]})

    @dg.asset(key_prefix=[PIPE], partitions_def=parts, ins={"bars": dg.AssetIn(key=[PIPE, "bars"])})
    def bar_stats(context, bars: pa.Table) -> pa.Table:
        per_key[context.partition_key] = bars.column("px").to_pylist()
        assert set(bars.column("partition_key").to_pylist()) == {context.partition_key}
        return bars

    @dg.asset(key_prefix=[PIPE], ins={"bars": dg.AssetIn(key=[PIPE, "bars"])})
    def all_bars(bars: pa.Table) -> pa.Table:
        everything.append(bars)
        return bars

    for key in parts.get_partition_keys():
        assert run([bars], lake, instance, partition_key=key).success
    scale["k"] = 10
    assert run([bars], lake, instance, partition_key="2024-01-02").success
    meta = latest_metadata(instance, "bars")
    assert meta["partition_key"] == "2024-01-02" and meta["rows"] == 2

    assert run(
        [bars, bar_stats], lake, instance, selection=[bar_stats], partition_key="2024-01-03"
    ).success
    assert per_key["2024-01-03"] == [3.5, 3.25]
    assert run([bars, all_bars], lake, instance, selection=[all_bars]).success
    rows = sorted(
        zip(*everything[-1].select(["partition_key", "px"]).to_pydict().values(), strict=True)
    )
    assert rows == [
        ("2024-01-02", 20.25),
        ("2024-01-02", 20.5),
        ("2024-01-03", 3.25),
        ("2024-01-03", 3.5),
    ]


def test_history_bounded_and_old_partitions_still_readable(tmp_path: Path) -> None:
    """Snapshots beyond `snapshots_to_keep` expire in the write commit; a partition whose
    recorded snapshot expired is read from the current snapshot (it has not changed since)."""
    lake = LakeIOManager(
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=str(tmp_path / "warehouse"),
        snapshots_to_keep=4,
        artifact_store=ArtifactStore(root=str(tmp_path / "artifacts")),
    )
    first = lake.write_arrow(PIPE, "daily", pa.table({"v": [0]}), partition_key="d00")
    for i in range(1, 10):
        lake.write_arrow(PIPE, "daily", pa.table({"v": [i]}), partition_key=f"d{i:02d}")
    table = lake.catalog().load_table((PIPE, "daily"))
    assert len(table.snapshots()) == 4
    old = read_partitions(lake.catalog(), (PIPE, "daily"), ["d00"], [first.snapshot_id])
    assert old.column("v").to_pylist() == [0]
    with pytest.raises(LakeTableError, match=f"snapshot {first.snapshot_id} no longer exists"):
        lake.read_arrow(PIPE, "daily", first.snapshot_id)


def test_replacing_a_table_again_and_again_keeps_its_manifest_list_short(tmp_path: Path) -> None:
    """A table replaced by every run (an unpartitioned node) must not get slower to write and
    read with each run: the current snapshot names only manifests with live files."""
    lake = LakeIOManager(
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=str(tmp_path / "warehouse"),
        artifact_store=ArtifactStore(root=str(tmp_path / "artifacts")),
    )
    for i in range(25):
        lake.write_arrow(PIPE, "signal", pa.table({"v": [i, i + 1]}))
    table = lake.catalog().load_table((PIPE, "signal"))
    snapshot = table.current_snapshot()
    assert snapshot is not None
    manifests = snapshot.manifests(table.io)
    assert len(manifests) <= 2, f"{len(manifests)} manifests after 25 replaces"
    # The only manifest without live files is this snapshot's own record of what it deleted.
    dead = [m for m in manifests if not (m.has_added_files() or m.has_existing_files())]
    assert all(m.added_snapshot_id == snapshot.snapshot_id for m in dead)
    assert lake.read_arrow(PIPE, "signal", None).column("v").to_pylist() == [24, 25]


def test_replacing_one_partition_of_a_shared_manifest_keeps_the_others(tmp_path: Path) -> None:
    """A ranged write puts several partitions in one manifest; replacing one of them later
    rewrites that manifest with the others as EXISTING and records the replaced file as
    DELETED, the snapshot summary counting both, as PyIceberg's own overwrite does."""
    lake = LakeIOManager(
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=str(tmp_path / "warehouse"),
        artifact_store=ArtifactStore(root=str(tmp_path / "artifacts")),
    )
    write_partitions(
        lake.catalog(),
        (PIPE, "ranged"),
        None,
        {"a": pa.table({"v": [1, 2]}), "b": pa.table({"v": [3]}), "c": pa.table({"v": [4]})},
    )
    lake.write_arrow(PIPE, "ranged", pa.table({"v": [30, 31, 32]}), partition_key="b")
    table = lake.catalog().load_table((PIPE, "ranged"))
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    summary = snapshot.summary
    assert summary.operation.value == "overwrite"
    assert summary["added-data-files"] == "1" and summary["deleted-data-files"] == "1"
    assert summary["deleted-records"] == "1" and summary["total-records"] == "6"
    assert summary["total-data-files"] == "3"
    statuses = sorted(
        (e.status.name, e.data_file.partition[0])
        for m in snapshot.manifests(table.io)
        for e in m.fetch_manifest_entry(table.io, discard_deleted=False)
    )
    assert statuses == [("ADDED", "b"), ("DELETED", "b"), ("EXISTING", "a"), ("EXISTING", "c")]
    rows = sorted(zip(*lake.read_arrow(PIPE, "ranged", None).to_pydict().values(), strict=True))
    assert rows == [(1, "a"), (2, "a"), (4, "c"), (30, "b"), (31, "b"), (32, "b")]
