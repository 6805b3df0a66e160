"""The example backtest materialized through Dagster on the embedded default.

Real engines throughout: dagster-pipes subprocesses, DuckDB, a local Ray, an
Iceberg SqlCatalog on SQLite with a file warehouse, the local artifact store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter

from definitions.assemble import build_definitions
from resources.profile import active_profile

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "xs_momentum_v1"

pytestmark = pytest.mark.e2e


def _latest_meta(instance: DagsterInstance, key: AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None, (
        f"{key} was never materialized"
    )
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("example")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mp.setenv("QUANTOS_DATA_DIR", str(root / "data"))
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("QUANTOS_SPECS_DIR", str(REPO / "specs"))
    defs = build_definitions()
    instance = DagsterInstance.get()
    job = defs.resolve_job_def(PIPELINE)
    first = job.execute_in_process(instance=instance, raise_on_error=False)
    yield defs, instance, first
    instance.dispose()
    mp.undo()


def test_example_materializes_end_to_end(materialized) -> None:
    defs, _instance, result = materialized
    assert result.success, [
        e.event_specific_data.error.message
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_FAILURE
    ]
    keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] == PIPELINE]
    mats = {e.asset_key for e in result.get_asset_materialization_events()}
    assert set(keys) == mats


def test_tables_land_in_iceberg_with_snapshot_metadata(materialized) -> None:
    _defs, instance, _ = materialized
    from pyiceberg.catalog.sql import SqlCatalog

    profile = active_profile()
    catalog = SqlCatalog("quantos", uri=profile.catalog_uri, warehouse=profile.warehouse)
    meta = _latest_meta(instance, AssetKey([PIPELINE, "features"]))
    assert meta["rows"] > 1000
    table = catalog.load_table((PIPELINE, "features"))
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.snapshot_id == meta["snapshot_id"]
    assert len(table.scan().to_arrow()) == meta["rows"]


def test_model_and_metrics_artifacts_with_sha256(materialized) -> None:
    _defs, instance, result = materialized
    model = _latest_meta(instance, AssetKey([PIPELINE, "model_uri"]))
    assert "/models/xs_momentum_v1/" in model["uri"] and model["uri"].endswith("/model.bin")
    data = Path(model["uri"].removeprefix("file://")).read_bytes()
    assert hashlib.sha256(data).hexdigest() == model["sha256"]
    metrics = _latest_meta(instance, AssetKey([PIPELINE, "metrics_json"]))
    assert f"/reports/{result.run_id}/metrics.json" in metrics["uri"]
    report = json.loads(Path(metrics["uri"].removeprefix("file://")).read_text())
    assert report["n_train"] > 0 and "ic" in report


def test_rematerializing_a_node_reads_the_previous_snapshot(materialized) -> None:
    defs, instance, _ = materialized
    upstream = _latest_meta(instance, AssetKey([PIPELINE, "universe"]))["snapshot_id"]
    job = defs.resolve_job_def(PIPELINE)
    second = job.execute_in_process(
        instance=instance,
        asset_selection=[AssetKey([PIPELINE, "model_uri"]), AssetKey([PIPELINE, "metrics_json"])],
        raise_on_error=False,
    )
    assert second.success
    loaded = [e for e in second.all_events if e.event_type == DagsterEventType.LOADED_INPUT]
    assert loaded, "train_model loaded no input"
    assert any(
        e.event_specific_data.metadata.get("snapshot_id") is not None
        and e.event_specific_data.metadata["snapshot_id"].value == upstream
        for e in loaded
    ), "downstream did not read the upstream's recorded snapshot"
    # features were not recomputed
    records = instance.get_event_records(
        EventRecordsFilter(
            DagsterEventType.ASSET_MATERIALIZATION, asset_key=AssetKey([PIPELINE, "features"])
        )
    )
    assert len(records) == 1
