"""The ML half end to end on a real two-node Ray cluster on loopback (a head and a worker
node, 1 CPU each, started with `ray start`): the seed's own BiLSTM example run unchanged
through `quantos run`, and a gated bilstm promoted only after the promotion gate's
reproducibility retrain on Ray Train matched its metrics.

Minutes, not seconds (the seed trains 30 epochs): `make test-ray`, not `make test`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, Definitions
from profiles import LOCAL
from ray_nodes import RayNodes, two_nodes

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.trainers.torch_artifact import load_torch_model
from resources.profile import active_profile, build_resources

pytestmark = [pytest.mark.integration, pytest.mark.ray_cluster]

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml"
GATED = REPO / "tests" / "fixtures" / "gates" / "gated_bilstm.yaml"


@pytest.fixture(scope="module")
def nodes() -> Iterator[RayNodes]:
    with two_nodes() as cluster:
        yield cluster


def _local_env(root: Path, address: str) -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTOS_")}
    return {
        **env,
        "QUANTOS_ENV": "local",
        "QUANTOS_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(home),
        "QUANTOS_RAY_ADDRESS": address,
    }


def test_the_seed_example_runs_unchanged_and_trains_its_bilstm_on_the_cluster(
    nodes: RayNodes, tmp_path: Path
) -> None:
    quantos = Path(sys.executable).with_name("quantos")
    done = subprocess.run(
        [str(quantos), "run", str(SEED)],
        env=_local_env(tmp_path, nodes.address),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    artifacts = tmp_path / "data" / "artifacts"
    [metrics_file] = list((artifacts / "reports").rglob("metrics.json"))
    [model_file] = list((artifacts / "models" / "bt_xs_bilstm_v1").rglob("model.bin"))
    metrics = json.loads(metrics_file.read_text())
    training = metrics["training"]
    # The seed's params: bilstm, 30 epochs, trained by Ray Train on the cluster's nodes.
    assert (
        metrics["trainer"] == "bilstm" and training["epochs"] == 30 and training["epochs_run"] == 30
    )
    assert training["framework"] == "pytorch" and training["workers"] == 1
    import ray

    ray_nodes = {n["NodeID"] for n in ray.nodes()}
    assert {node for start in training["placements"] for node in start} <= ray_nodes
    assert metrics["n_train"] > metrics["n_validation"] > 0 and metrics["n_test"] > 0
    assert -1 <= metrics["ic"] <= 1
    model = load_torch_model(model_file.read_bytes())
    assert (
        model.trainer == "bilstm" and model.lookback == 20 and model.features == metrics["features"]
    )


def test_a_gated_bilstm_is_promoted_after_its_retrain_reproduces_its_metrics(
    nodes: RayNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _local_env(tmp_path, nodes.address).items():
        if key.startswith(("QUANTOS_", "DAGSTER_HOME")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("QUANTOS_GATEWAY_DB", raising=False)
    monkeypatch.setenv(
        "QUANTOS_PROMOTION_POLICY",
        str(REPO / "tests" / "fixtures" / "gates" / "policy_reproducibility_only.yaml"),
    )
    pipeline = build_pipeline(load_spec(GATED), LOCAL)
    defs = Definitions(
        assets=pipeline.assets,
        asset_checks=pipeline.asset_checks(),
        jobs=[pipeline.job],
        resources=build_resources(active_profile()),
    )
    instance = DagsterInstance.get()
    try:
        result = defs.resolve_job_def(pipeline.job.name).execute_in_process(
            instance=instance, raise_on_error=False
        )
    finally:
        instance.dispose()
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    reproducible = checks["reproducible"]
    assert reproducible.asset_check_key == AssetCheckKey(
        AssetKey(["gated_bilstm", "model_uri"]), "reproducible"
    )
    assert reproducible.passed, reproducible.description
    assert re.fullmatch(
        r"retrained with seed 7 on gated_bilstm\.features@\d+ with 1 worker\(s\): metrics match "
        r"within rel 0\.001",
        reproducible.description or "",
    )
    recorded = reproducible.metadata["recorded"].value
    retrained = reproducible.metadata["retrained"].value
    assert (
        isinstance(recorded, dict)
        and isinstance(retrained, dict)
        and set(recorded) >= {"best_val_loss", "mse", "ic"}
    )
    promoted = {
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key
    }
    assert {f"gated_bilstm/promoted/{stage}" for stage in ("staging", "canary", "prod")} <= promoted
