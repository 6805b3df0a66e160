"""Deep-learning trainers on a real two-node Ray cluster on loopback (a head and a worker
node, 1 CPU each, started with `ray start`): data-parallel training across both nodes,
a node lost mid-training, a killed step resumed from its checkpoint.

The two fault tests (`ray_faults`) take ~6 min on 2 cores and run with `make test-ray-faults`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import build_asset_context
from profiles import runners
from ray_nodes import RayNodes, two_nodes

from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from quantos_assets.tasks.features import compute
from quantos_assets.tasks.market_data import generate
from quantos_assets.trainers.ray_training import CheckpointPlace, TorchPlacement, train_torch
from quantos_assets.trainers.torch_artifact import load_torch_model
from quantos_assets.trainers.training import TrainingJob
from resources.artifact import Artifact
from resources.artifact_store import ArtifactStore
from resources.lake_io_manager import LakeIOManager
from resources.ray_cluster import RayResource
from resources.table_ref import TableRef

pytestmark = pytest.mark.integration

FEATURES = ["mom_rank", "rev_rank", "vol_rank"]
SMALL = {"lookback": 5, "hidden": 8, "batch_size": 128}


@pytest.fixture(scope="module")
def nodes() -> Iterator[RayNodes]:
    with two_nodes() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> LakeIOManager:
    root = tmp_path_factory.mktemp("lake")
    store = ArtifactStore(root=str(root / "artifacts"))
    return LakeIOManager(
        catalog_uri=f"sqlite:///{root / 'catalog.db'}",
        warehouse=str(root / "warehouse"),
        artifact_store=store,
    )


@pytest.fixture(scope="module")
def features(lake: LakeIOManager) -> TableRef:
    table = compute(generate(symbols=12, start="2022-01-03", end="2023-03-31", seed=5))
    written = lake.write_arrow("rt", "features", table)
    return lake.table_ref("rt", "features", written.snapshot_id)


def _job(epochs: int, **hp: Any) -> TrainingJob:
    return TrainingJob(
        trainer="bilstm",
        features=FEATURES,
        seed=3,
        hyperparameters={**SMALL, "epochs": epochs, **hp},
    )


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint_*")) if folder.exists() else []


def _registered(folder: Path) -> int:
    """Checkpoints Ray Train has recorded (what a restart can resume from), not merely written."""
    try:
        return len(
            json.loads((folder / "checkpoint_manager_snapshot.json").read_text())[
                "checkpoint_results"
            ]
        )
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.ray_faults
def test_two_workers_on_two_nodes_survive_losing_one(
    nodes: RayNodes, lake: LakeIOManager, features: TableRef
) -> None:
    store = lake.artifact_store
    path, _ = store.filesystem_path("checkpoints/rt/lost-node")
    place = CheckpointPlace(path=path, name="train", uri=store.uri_for("checkpoints/rt/lost-node"))
    # 2 workers of 1 CPU each on a cluster of two 1-CPU nodes: one worker per node. Enough
    # epochs that training is still going when the node is killed (held in memory, an epoch
    # of this small set takes well under a second).
    epochs = 24
    outcome: dict[str, Any] = {}

    def train() -> None:
        try:
            outcome["result"] = train_torch(
                features.to_ray_dataset(),
                _job(epochs=epochs),
                TorchPlacement(workers=2, cpus_per_worker=1, min_workers=1),
                place,
            )
        except BaseException as err:  # noqa: BLE001 - surfaced by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 240
    while (
        _registered(Path(path) / "train") < 2 and thread.is_alive() and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    nodes.kill(nodes.workers[0])
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    training = outcome["result"].metrics["training"]
    first, *after = training["placements"]
    assert len(first) == 2 and len(set(first)) == 2, (
        f"the first worker group spans two nodes: {first}"
    )
    assert after and training["starts"][-1] >= 1, (
        f"resumed from a checkpoint, not epoch 0: {training['starts']}"
    )
    assert training["epochs_run"] == epochs and [h["epoch"] for h in training["history"]] == list(
        range(epochs)
    )
    assert len(_checkpoints(Path(path) / "train")) >= epochs, (
        "a checkpoint per epoch in the artifact store"
    )
    assert training["best_checkpoint"].startswith(path)


DRIVER = """
import json, sys
sys.path.insert(0, {root!r})
from resources.artifact_store import ArtifactStore
from resources.lake_io_manager import LakeIOManager
from resources.ray_cluster import RayResource
from quantos_assets.trainers.ray_training import CheckpointPlace, TorchPlacement, train_torch
from quantos_assets.trainers.training import TrainingJob
RayResource(address={address!r}).init()
lake = LakeIOManager(catalog_uri={catalog!r}, warehouse={warehouse!r}, \
artifact_store=ArtifactStore(root={artifacts!r}))
ref = lake.table_ref("rt", "features", {snapshot})
job = TrainingJob(trainer="bilstm", features={features!r}, seed=3, hyperparameters={hp!r})
result = train_torch(ref.to_ray_dataset(), job, TorchPlacement(workers=1, cpus_per_worker=1), \
CheckpointPlace(path={path!r}, name="train", uri="x"))
print(json.dumps(result.metrics["training"]["starts"]))
"""


@pytest.mark.ray_faults
def test_a_killed_step_resumes_from_its_last_checkpoint(
    nodes: RayNodes, lake: LakeIOManager, features: TableRef
) -> None:
    """What a retried step does: a new driver trains under the same run name as the one that
    died."""
    store = lake.artifact_store
    path, _ = store.filesystem_path("checkpoints/rt/retried")
    script = DRIVER.format(
        root=str(Path(__file__).resolve().parents[2]),
        address=nodes.address,
        catalog=lake.catalog_uri,
        warehouse=lake.warehouse,
        artifacts=store.root,
        snapshot=features.snapshot_id,
        features=FEATURES,
        hp={**SMALL, "epochs": 8},
        path=path,
    )
    step = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while (
        _registered(Path(path) / "train") < 2
        and step.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    step.kill()
    step.wait()
    done_before = _registered(Path(path) / "train")
    assert 2 <= done_before < 8, f"the first attempt died mid-training ({done_before} checkpoints)"

    again = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr[-3000:]
    starts = json.loads(again.stdout.strip().splitlines()[-1])
    assert starts[0] == 0 and starts[-1] == done_before, (
        f"epochs 0..{done_before - 1} were not trained again: {starts}"
    )
    assert _registered(Path(path) / "train") == 8


def test_the_node_trains_a_bilstm_and_its_model_scores_rows(
    nodes: RayNodes, lake: LakeIOManager, features: TableRef
) -> None:
    node = Node(
        id="train_model",
        kind=NodeKind.ray_job,
        ins=["features"],
        outs=["model_uri", "metrics_json"],
        params={
            "trainer": "bilstm",
            "seed": 3,
            "epochs": 3,
            "features": FEATURES,
            **SMALL,
            "early_stopping": {"patience": 1},
        },
    )
    spec = DagSpec.model_construct(
        version=1, pipeline_id="rt", nodes=[node], labels={"team": "research"}
    )
    ray_resource = RayResource(address=nodes.address)
    with build_asset_context(
        resources={"ray": ray_resource, "artifact_store": lake.artifact_store}
    ) as context:
        values = runner_for(NodeKind.ray_job, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs={"features": features})
        )
    model, report = values["model_uri"], values["metrics_json"]
    assert isinstance(model, Artifact) and isinstance(report, Artifact)
    card = model.metadata["model_card"]
    assert card["framework"] == "pytorch" and card["trainer"] == "bilstm"
    assert card["training"]["workers"] == 1 and card["training"]["epochs_run"] <= 3
    metrics = json.loads(report.data)
    assert metrics["n_train"] > 3 * metrics["n_test"] > 0 and -1 <= metrics["ic"] <= 1
    loaded = load_torch_model(model.data)
    assert loaded.features == FEATURES and loaded.lookback == SMALL["lookback"]


def test_a_feature_the_table_lacks_is_one_line_before_any_work(
    nodes: RayNodes, features: TableRef
) -> None:
    node = Node(
        id="train_model",
        kind=NodeKind.ray_job,
        ins=["features"],
        outs=["model_uri"],
        params={"trainer": "bilstm", "features": ["mom_rank", "no_such"]},
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="rt", nodes=[node])
    with (
        build_asset_context(resources={"ray": RayResource(address=nodes.address)}) as context,
        pytest.raises(NodeRunError) as err,
    ):
        runner_for(NodeKind.ray_job, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs={"features": features})
        )
    assert str(err.value) == "rt.train_model: the input table has no column(s) ['no_such']"


@pytest.mark.ray_cluster
def test_a_four_trial_search_keeps_its_best_trial_as_the_model(
    nodes: RayNodes, lake: LakeIOManager, features: TableRef
) -> None:
    search = {"lr": "loguniform(1e-3, 3e-2)", "hidden": "choice(4, 8)", "trials": 4}
    node = Node(
        id="tuned",
        kind=NodeKind.ray_job,
        ins=["features"],
        outs=["model_uri", "metrics_json"],
        params={
            "trainer": "bilstm",
            "seed": 3,
            "epochs": 2,
            "features": FEATURES,
            "lookback": 5,
            "batch_size": 128,
            "search": search,
        },
    )
    spec = DagSpec.model_construct(
        version=1, pipeline_id="rt", nodes=[node], labels={"team": "research"}
    )
    with build_asset_context(
        resources={"ray": RayResource(address=nodes.address), "artifact_store": lake.artifact_store}
    ) as context:
        values = runner_for(NodeKind.ray_job, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs={"features": features})
        )
    model_out, report = values["model_uri"], values["metrics_json"]
    assert isinstance(model_out, Artifact) and isinstance(report, Artifact)
    metrics = json.loads(report.data)
    trials = metrics["search"]["trials_run"]
    assert len(trials) == 4 and len({t["trial"] for t in trials}) == 4, trials
    assert all("error" not in t and t["epochs_run"] == 2 for t in trials), trials
    for t in trials:
        assert 1e-3 <= t["hyperparameters"]["lr"] <= 3e-2 and t["hyperparameters"]["hidden"] in (
            4,
            8,
        )
    best = [t for t in trials if t["best"]]
    assert len(best) == 1 and best[0]["best_val_loss"] == min(t["best_val_loss"] for t in trials)
    # The model is the best trial's: its hyperparameters, its validation loss.
    model = load_torch_model(model_out.data)
    assert {k: model.hyperparameters[k] for k in ("lr", "hidden")} == best[0]["hyperparameters"]
    assert metrics["training"]["best_val_loss"] == best[0]["best_val_loss"]
    card = model_out.metadata["model_card"]
    assert (
        card["search"]["trials_run"] == trials
        and card["hyperparameters"]["hidden"] == best[0]["hyperparameters"]["hidden"]
    )
