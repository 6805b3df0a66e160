"""The production compute log manager (dagster-aws's S3ComputeLogManager) against moto's S3 server.

The instance is local SQLite storage plus the `compute_logs` section of deploy/dagster.prod.yaml,
copied verbatim: its bucket comes from QUANTOS_COMPUTE_LOGS_BUCKET and, as on a MinIO install,
its endpoint from botocore's AWS_ENDPOINT_URL_S3 (the section names none: an unset `{env: ...}`
would fail the instance on AWS). A run's captured stdout must be an object under the prefix,
i.e. still there once the pod that printed it is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest
import yaml
from moto_s3 import REGION, s3_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUCKET = "quantos-compute-logs-test"
MARKER = "quantos-compute-log-marker-7f3a"


@dg.op
def say_marker() -> None:
    print(MARKER, flush=True)


@dg.job
def print_job() -> None:
    say_marker()


def _prod_compute_logs() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "dagster.prod.yaml").read_text())["compute_logs"]


@pytest.fixture
def instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dg.DagsterInstance, str]]:
    with s3_server(BUCKET) as endpoint:
        monkeypatch.setenv("QUANTOS_COMPUTE_LOGS_BUCKET", BUCKET)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        home = tmp_path / "dagster_home"
        home.mkdir()
        config = {
            "telemetry": {"enabled": False},
            "storage": {"sqlite": {"base_dir": str(tmp_path / "storage")}},
            "compute_logs": _prod_compute_logs(),
        }
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        inst = dg.DagsterInstance.from_config(str(home))
        try:
            yield inst, endpoint
        finally:
            inst.dispose()


def test_prod_compute_logs_put_a_runs_stdout_in_s3(
    instance: tuple[dg.DagsterInstance, str],
) -> None:
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    inst, endpoint = instance
    manager = inst.compute_log_manager
    assert isinstance(manager, S3ComputeLogManager)
    config = _prod_compute_logs()["config"]
    assert manager.upload_interval == config["upload_interval"]

    result = print_job.execute_in_process(instance=inst)
    assert result.success
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        prefix = f"{config['prefix']}/storage/{result.run_id}/"
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        keys = [o["Key"] for o in listed]
        stdout = [k for k in keys if k.endswith(".out")]
        assert stdout, f"no captured stdout under s3://{BUCKET}/{prefix}: {keys}"
        bodies = [s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode() for k in stdout]
        assert any(MARKER in b for b in bodies), bodies
        # nothing stays "partial" once the run is over
        assert not [k for k in keys if k.endswith(".partial")], keys
    finally:
        # the staging dir is the production one (/tmp/...): leave nothing of this run there
        manager.delete_logs(prefix=[result.run_id])
