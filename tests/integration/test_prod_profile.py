"""The production profile against real servers on loopback: PostgreSQL and moto's S3.

Dagster's run/event/schedule storage comes from deploy/dagster.prod.yaml itself (URL from env),
the Iceberg SqlCatalog lives in the same PostgreSQL server and the warehouse and artifacts in S3.
The executor is in-process (no cluster here); the Kubernetes side is covered by
test_prod_k8s_manifests.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import psycopg2
import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from moto_s3 import s3_server
from postgres_db import PG_URL, fresh_database

REPO = Path(__file__).resolve().parents[2]
PG = PG_URL
PIPELINE = "xs_momentum_v1"


@pytest.fixture(scope="module")
def pg_db():
    with fresh_database("quantos_prod_test") as db:
        yield db


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def prod_env(pg_db, s3_endpoint, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("prod")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.prod.yaml", home / "dagster.yaml")
    env = {
        "QUANTOS_ENV": "prod",
        "QUANTOS_DAGSTER_PG_URL": PG.format(db=pg_db),
        "QUANTOS_K8S_NAMESPACE": "quantos",
        "QUANTOS_CATALOG_URI": PG.format(db=pg_db),
        "QUANTOS_WAREHOUSE": "s3://lake/warehouse",
        "QUANTOS_ARTIFACTS": "s3://artifacts/quantos",
        "QUANTOS_S3_ENDPOINT": s3_endpoint,
        "QUANTOS_S3_REGION": "us-east-1",
        # dagster.prod.yaml's compute logs (S3ComputeLogManager): the bucket, and the endpoint
        # through botocore's variable, as on MinIO (test_compute_logs_s3.py checks the upload)
        "QUANTOS_COMPUTE_LOGS_BUCKET": "compute-logs",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "QUANTOS_DATA_DIR": str(root / "data"),
        "QUANTOS_SPECS_DIR": str(REPO / "specs"),
        "DAGSTER_HOME": str(home),
    }
    for k, v in env.items():
        mp.setenv(k, v)
    mp.delenv("QUANTOS_TRINO_HOST", raising=False)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for bucket in ("lake", "artifacts", "compute-logs"):
        s3.create_bucket(Bucket=bucket)
    yield env, home, s3
    mp.undo()


@pytest.fixture(scope="module")
def materialized(prod_env):
    from definitions.assemble import build_definitions

    _env, home, _s3 = prod_env
    instance = DagsterInstance.from_config(str(home))
    defs = build_definitions()
    result = defs.resolve_job_def(PIPELINE).execute_in_process(
        instance=instance, raise_on_error=False, tags={"quantos/team": "research"}
    )
    yield defs, instance, result
    instance.compute_log_manager.delete_logs(prefix=[result.run_id])  # staged in /tmp/...
    instance.dispose()


def test_prod_yaml_puts_dagster_storage_in_postgres(prod_env, materialized) -> None:
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    from quantos_assets.apps.launcher.k8s_run_launcher import TracedK8sRunLauncher

    _defs, instance, result = materialized
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert instance.get_ref().run_launcher_data.class_name == TracedK8sRunLauncher.__name__
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    limits = instance.get_ref().run_coordinator_data.config_dict["tag_concurrency_limits"]
    assert {
        "key": "quantos/team",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 2,
    } in limits
    # the run and its events are rows in the test database, readable by a second instance
    other = DagsterInstance.from_config(str(prod_env[1]))
    record = other.get_run_records(RunsFilter(run_ids=[result.run_id]))[0]
    assert record.dagster_run.status == DagsterRunStatus.SUCCESS
    assert record.dagster_run.tags["quantos/team"] == "research"
    other.dispose()
    db = prod_env[0]["QUANTOS_DAGSTER_PG_URL"].rsplit("/", 1)[1]
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=db)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (result.run_id,))
        row = cur.fetchone()
        assert row is not None and row[0] > 10
    conn.close()


def test_example_materializes_on_postgres_and_s3(prod_env, materialized) -> None:
    defs, instance, result = materialized
    assert result.success, [
        e.event_specific_data.error.message
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_FAILURE
    ]
    _env, _home, s3 = prod_env
    keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] == PIPELINE]
    assert {e.asset_key for e in result.get_asset_materialization_events()} == set(keys)
    model = instance.get_latest_materialization_event(AssetKey([PIPELINE, "model_uri"]))
    uri = str(model.asset_materialization.metadata["uri"].value)
    assert uri.startswith("s3://artifacts/quantos/models/xs_momentum_v1/")
    lake = s3.list_objects_v2(Bucket="lake", Prefix="warehouse/")
    assert any(o["Key"].endswith(".parquet") for o in lake.get("Contents", []))


def test_lake_io_manager_postgres_catalog_s3_warehouse_roundtrip(prod_env) -> None:
    from resources.profile import active_profile, build_resources

    io = build_resources(active_profile())["io_manager"]
    data = pa.table({"symbol": ["AAPL", "MSFT"], "ret": [0.01, -0.02]})
    written = io.write_arrow("prod_probe", "returns", data)
    assert io.read_arrow("prod_probe", "returns", written.snapshot_id).equals(data)
    table = io.catalog().load_table(("prod_probe", "returns"))
    assert table.metadata_location.startswith("s3://lake/warehouse/")
    db = prod_env[0]["QUANTOS_CATALOG_URI"].rsplit("/", 1)[1]
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=db)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT metadata_location FROM iceberg_tables WHERE table_namespace = %s AND "
            "table_name = %s",
            ("prod_probe", "returns"),
        )
        row = cur.fetchone()
        assert row is not None and row[0] == table.metadata_location
    conn.close()


def test_prod_profile_runs_steps_with_k8s_job_executor(prod_env) -> None:
    from dagster_k8s import k8s_job_executor

    from resources.profile import active_profile, build_executor

    assert build_executor(active_profile()) is k8s_job_executor


def test_lake_maintenance_on_the_postgres_catalog_and_s3(prod_env) -> None:
    """The same pass as locally, where storage is S3: expired snapshots' objects and an
    orphan are deleted from the bucket, the table still reads its current data."""
    from datetime import UTC, datetime, timedelta

    from quantos_assets.lake.upkeep import maintain
    from resources.lake_upkeep_settings import LakeUpkeep
    from resources.profile import active_profile, build_resources

    _env, home, s3 = prod_env
    resources = build_resources(active_profile())
    io = resources["io_manager"]
    for i in range(3):
        io.write_arrow("prod_upkeep", "t", pa.table({"x": [i]}))
    prefix = "warehouse/prod_upkeep/t/"

    def keys() -> set[str]:
        listed = s3.list_objects_v2(Bucket="lake", Prefix=prefix).get("Contents", [])
        return {o["Key"] for o in listed}

    orphan = f"{prefix}data/crashed-writer.parquet"
    s3.put_object(Bucket="lake", Key=orphan, Body=b"x" * 10)
    before = keys()
    instance = DagsterInstance.from_config(str(home))
    try:
        report = maintain(
            instance,
            io,
            resources["artifact_store"],
            None,
            {"prod_upkeep": "research"},
            LakeUpkeep(snapshot_days=0, orphan_grace_hours=0),
            datetime.now(UTC) + timedelta(seconds=5),
        )
    finally:
        instance.dispose()
    assert not report.problems, report.problems
    gone = before - keys()
    assert orphan in gone
    assert len([k for k in gone if k.endswith(".parquet")]) == 3  # 2 expired + the orphan
    table = io.catalog().load_table(("prod_upkeep", "t"))
    assert len(table.snapshots()) == 1
    assert io.read_arrow("prod_upkeep", "t", None).column("x").to_pylist() == [2]
    actions = {(a.action, a.decision) for a in report.actions}
    assert {("lake.expire", "done"), ("lake.orphans", "done")} <= actions
