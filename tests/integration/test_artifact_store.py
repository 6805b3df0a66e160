"""ArtifactStore on a local folder and on S3 (a real moto server on loopback), and the lake on
S3."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pytest
from dagster_events import latest_metadata
from moto_s3 import s3_server

from resources.artifact import Artifact
from resources.artifact_store import ArtifactNotFound, ArtifactStore, ArtifactStoreError
from resources.lake_io_manager import LakeIOManager

pytestmark = pytest.mark.integration

BUCKET = "quantos-artifacts"
LAKE_BUCKET = "quantos-lake"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server(BUCKET, LAKE_BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def s3_store(s3_endpoint: str) -> ArtifactStore:
    return ArtifactStore(root=f"s3://{BUCKET}/prefix", endpoint_url=s3_endpoint, region=REGION)


def test_local_put_get_exists_atomic(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path / "art"))
    uri = store.put("models/p/v1/model.pkl", b"weights")
    path = tmp_path / "art/models/p/v1/model.pkl"
    assert uri == path.as_uri()
    assert store.get(uri) == b"weights"
    assert store.get("models/p/v1/model.pkl") == b"weights"
    assert store.exists(uri) and not store.exists("models/p/v1/other.pkl")
    store.put("models/p/v1/model.pkl", b"weights2")  # replace in place
    assert path.read_bytes() == b"weights2"
    assert [p.name for p in path.parent.iterdir()] == ["model.pkl"]  # no temp files left behind


def test_local_errors_are_one_line(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path))
    with pytest.raises(
        ArtifactNotFound, match=r"^file://.*/queries/bt_fetch\.sql not found in the object store$"
    ):
        store.get("queries/bt_fetch.sql")
    with pytest.raises(ArtifactStoreError, match="must be relative"):
        store.put("../escape.bin", b"x")


def test_s3_put_get_exists(s3_store: ArtifactStore, s3_endpoint: str) -> None:
    uri = s3_store.put("reports/sub-1/report.html", b"<html/>")
    assert uri == f"s3://{BUCKET}/prefix/reports/sub-1/report.html"
    assert s3_store.get(uri) == b"<html/>"
    assert s3_store.get("reports/sub-1/report.html") == b"<html/>"
    assert s3_store.exists(uri) and not s3_store.exists("reports/sub-1/missing.html")
    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    body = raw.get_object(Bucket=BUCKET, Key="prefix/reports/sub-1/report.html")["Body"].read()
    assert body == b"<html/>"


def test_s3_missing_is_one_line(s3_endpoint: str) -> None:
    store = ArtifactStore(root="s3://queries", endpoint_url=s3_endpoint, region=REGION)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION).create_bucket(Bucket="queries")
    with pytest.raises(
        ArtifactNotFound, match=r"^s3://queries/bt_fetch\.sql not found in the object store$"
    ):
        store.get("bt_fetch.sql")


def test_lake_on_s3_artifacts_and_iceberg(
    s3_store: ArtifactStore, s3_endpoint: str, tmp_path: Path
) -> None:
    """LakeIOManager with an S3 artifact store and an S3 Iceberg warehouse (pyarrow S3 FileIO)."""
    lake = LakeIOManager(
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=f"s3://{LAKE_BUCKET}/warehouse",
        s3_endpoint=s3_endpoint,
        s3_region=REGION,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        artifact_store=s3_store,
    )
    got: dict[str, Any] = {}

    @dg.asset(key_prefix=["pipe_s3"])
    def model() -> Artifact:
        return Artifact(b"\x01\x02", role="model", filename="m.bin")

    @dg.asset(key_prefix=["pipe_s3"])
    def prices() -> pa.Table:
        return pa.table({"px": [1.0, 2.0]})

    @dg.asset(
        key_prefix=["pipe_s3"],
        ins={
            "model": dg.AssetIn(key=["pipe_s3", "model"]),
            "prices": dg.AssetIn(key=["pipe_s3", "prices"]),
        },
    )
    def scored(model: Artifact, prices: pa.Table) -> pa.Table:
        got["model"], got["prices"] = model, prices
        return prices

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [model, prices, scored],
        resources={"io_manager": lake},
        instance=instance,
        tags={"quantos/version": "v7"},
    )
    assert result.success
    meta = latest_metadata(instance, dg.AssetKey(["pipe_s3", "model"]))
    assert meta["uri"] == f"s3://{BUCKET}/prefix/models/pipe_s3/v7/m.bin"
    assert meta["sha256"] == hashlib.sha256(b"\x01\x02").hexdigest()
    assert got["model"] == Artifact(b"\x01\x02", role="model", filename="m.bin")
    assert got["prices"].column("px").to_pylist() == [1.0, 2.0]
    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=LAKE_BUCKET)["Contents"]]
    assert any(
        k.startswith("warehouse/pipe_s3/prices/data/") and k.endswith(".parquet") for k in keys
    )
