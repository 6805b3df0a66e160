"""ray_job `mode: predict` on a real two-node Ray cluster on loopback (a head and a worker
node, 1 CPU each, started with `ray start`): a Dagster run of the predict node reads its
model and feature table through the IO manager, scores the table with an actor pool (one
actor per node) and writes one prediction per feature row to Iceberg, per session in a
session-partitioned pipeline; a scikit-learn model scores row by row. A table without the
model's features fails before any Ray work.

The model is a seeded, untrained bilstm: what predict does with weights does not depend on
how they were learnt, and training one would cost most of this file's time."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    build_asset_context,
    materialize,
)
from profiles import LOCAL, runners
from ray_nodes import RayNodes, start_head, wait_for_nodes

from quantos_assets.calendars.partitions import partitions_name
from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.ray_predict import actor_pool
from quantos_assets.kinds.registry import runner_for
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec.models import DagSpec, Node, NodeKind, Resources
from quantos_assets.spec_rules.firm import load_spec_text
from quantos_assets.tasks.features import compute
from quantos_assets.tasks.market_data import generate
from quantos_assets.trainers.batch_predict import ActorPool
from quantos_assets.trainers.registry import get_trainer
from quantos_assets.trainers.torch_artifact import TorchModel, load_torch_model
from quantos_assets.trainers.training import TrainingJob, train
from quantos_assets.trainers.windows import WindowSpec, symbol_windows
from resources.artifact import Artifact
from resources.artifact_store import ArtifactStore
from resources.lake_io_manager import LakeIOManager
from resources.ray_cluster import RayResource
from resources.table_ref import TableRef

pytestmark = pytest.mark.integration

FEATURES = ["mom_rank", "rev_rank", "vol_rank"]
LOOKBACK = 5
SPEC = """\
version: 1
pipeline_id: {pipeline}
{partitions}
nodes:
  - id: features
    kind: python_task
    params: {{entrypoint: "quantos_assets.tasks.features:compute"}}
    outs: [features]
  - id: train
    kind: ray_job
    params: {{trainer: bilstm, lookback: {lookback}}}
    ins: [features]
    outs: [model_uri]
  - id: predict
    kind: ray_job
    params: {{mode: predict, workers: {workers}}}
    resources: {{cpu: "2"}}
    ins: [model_uri, features]
    outs: [predictions]
"""


@pytest.fixture(scope="module")
def nodes() -> Iterator[RayNodes]:
    import ray

    ray.shutdown()
    cluster = start_head(cpus=1)
    try:
        cluster.add_worker(cpus=1)
        RayResource(address=cluster.address).init()
        wait_for_nodes(ray, 2)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> LakeIOManager:
    root = tmp_path_factory.mktemp("lake")
    return LakeIOManager(
        catalog_uri=f"sqlite:///{root / 'catalog.db'}",
        warehouse=str(root / "warehouse"),
        artifact_store=ArtifactStore(root=str(root / "artifacts")),
    )


@pytest.fixture(scope="module")
def features() -> pa.Table:
    """Complete feature rows of 6 symbols (the first momentum_window rows have none), so the
    only null forecasts are the first lookback-1 rows of each symbol."""
    table = compute(generate(symbols=6, start="2022-01-03", end="2022-12-30", seed=5))
    complete = table.to_pandas().dropna(subset=FEATURES)
    # Stored in no particular order: predict must cut windows by symbol and date itself.
    return pa.Table.from_pandas(complete.sample(frac=1.0, random_state=1), preserve_index=False)


@pytest.fixture(scope="module")
def model() -> bytes:
    import torch

    hp = {**get_trainer("bilstm").defaults, "lookback": LOOKBACK, "hidden": 8}
    torch.manual_seed(3)
    net = get_trainer("bilstm").module(hp, len(FEATURES))
    net.scale.set(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([0.3, 0.3, 0.3]))
    return TorchModel("bilstm", hp, FEATURES, LOOKBACK, net.state_dict()).to_bytes()


def bare_forecasts(model: bytes, rows: pd.DataFrame) -> pd.Series:
    """The network's forward pass over windows cut by training's own function, by (date, symbol)."""
    import torch

    net = load_torch_model(model).network()
    spec = WindowSpec(tuple(FEATURES), None, "date", "symbol", LOOKBACK)
    parts = [symbol_windows(group, spec) for _, group in rows.groupby("symbol")]
    with torch.no_grad():
        forecast = np.concatenate([net(torch.from_numpy(p["x"])).numpy() for p in parts])
    index = pd.MultiIndex.from_arrays(
        [np.concatenate([p["date"] for p in parts]), np.concatenate([p["symbol"] for p in parts])],
        names=["date", "symbol"],
    )
    return pd.Series(forecast.astype(np.float64), index=index)


def check_predictions(predictions: pd.DataFrame, rows: pd.DataFrame, model: bytes) -> None:
    """One row per feature row; null exactly for the first lookback-1 rows of each symbol;
    the rest equal to the bare forward pass over the same windows."""
    assert len(predictions) == len(rows)
    keys = ["date", "symbol"]
    assert sorted(map(tuple, predictions[keys].astype(str).to_numpy())) == sorted(
        map(tuple, rows[keys].astype(str).to_numpy())
    )
    ranked = predictions.sort_values(keys).assign(n=lambda f: f.groupby("symbol").cumcount())
    assert (ranked["prediction"].isna() == (ranked["n"] < LOOKBACK - 1)).all()
    assert (predictions["model_sha256"] == hashlib.sha256(model).hexdigest()).all()
    bare = bare_forecasts(model, rows)
    ours = predictions.dropna(subset=["prediction"]).set_index(keys)["prediction"]
    assert len(ours) == len(bare) > 0
    np.testing.assert_allclose(
        ours.loc[bare.index].to_numpy(), bare.to_numpy(), rtol=1e-5, atol=1e-6
    )


def _record(
    instance: DagsterInstance,
    key: list[str],
    metadata: dict[str, Any],
    partition: str | None = None,
) -> None:
    """What LakeIOManager.handle_output records for an upstream it wrote (the upstream nodes
    are not run here: a python_task and a training take longer than the predict under test)."""
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=AssetKey(key), partition=partition, metadata=metadata)
    )


def _upstream(
    instance: DagsterInstance,
    lake: LakeIOManager,
    pipeline: str,
    table: pa.Table,
    model: bytes,
    partition: str | None = None,
) -> None:
    written = lake.write_arrow(pipeline, "features", table, partition_key=partition)
    _record(
        instance,
        [pipeline, "features"],
        {"storage": "iceberg", "snapshot_id": written.snapshot_id, "table": f"{pipeline}.features"},
        partition,
    )
    uri = lake.artifact_store.put(f"models/{pipeline}/{partition or 'v1'}/model.bin", model)
    _record(
        instance,
        [pipeline, "model_uri"],
        {"storage": "artifact", "uri": uri, "role": "model", "filename": "model.bin"},
        partition,
    )


def _predict(
    nodes: RayNodes,
    lake: LakeIOManager,
    instance: DagsterInstance,
    pipeline: Any,
    session: str | None,
) -> None:
    predict = next(
        a for a in pipeline.assets if AssetKey([pipeline.spec.pipeline_id, "predictions"]) in a.keys
    )
    # The predict node alone: its upstream assets are read from what the instance recorded.
    upstream = [
        AssetSpec(key, partitions_def=predict.partitions_def) for key in predict.dependency_keys
    ]
    result = materialize(
        [predict, *upstream],
        instance=instance,
        partition_key=session,
        resources={
            "io_manager": lake,
            "artifact_store": lake.artifact_store,
            "ray": RayResource(address=nodes.address),
        },
    )
    assert result.success


def test_predict_writes_one_row_per_input_row(
    nodes: RayNodes, lake: LakeIOManager, features: pa.Table, model: bytes
) -> None:
    pipeline = build_pipeline(
        load_spec_text(
            SPEC.format(pipeline="rp", partitions="", lookback=LOOKBACK, workers=2),
            "rp.yaml",
            "yaml",
        ),
        LOCAL,
    )
    instance = DagsterInstance.ephemeral()
    _upstream(instance, lake, "rp", features, model)

    _predict(nodes, lake, instance, pipeline, None)

    event = instance.get_latest_materialization_event(AssetKey(["rp", "predictions"]))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert metadata["storage"].value == "iceberg" and metadata["rows"].value == features.num_rows
    snapshot_id = metadata["snapshot_id"].value
    assert isinstance(snapshot_id, int)
    stored = lake.read_arrow("rp", "predictions", snapshot_id)
    assert stored.schema.names == ["date", "symbol", "prediction", "model_sha256"]
    assert stored.schema.field("prediction").type == pa.float64()
    check_predictions(stored.to_pandas(), features.to_pandas(), model)


def test_predict_per_session_reads_and_writes_its_session(
    nodes: RayNodes, lake: LakeIOManager, features: pa.Table, model: bytes
) -> None:
    """Each session's partition of the features holds its trailing 30 days; each predict run
    reads only its own session's partition and replaces only its own partition of predictions."""
    # One actor of 2 CPUs (the 2-actor pool is the test above): half the PyTorch imports.
    text = SPEC.format(
        pipeline="rps",
        partitions='partitions: {calendar: XNYS, start: "2022-11-01"}',
        lookback=LOOKBACK,
        workers=1,
    )
    pipeline = build_pipeline(load_spec_text(text, "rps.yaml", "yaml"), LOCAL)
    instance = DagsterInstance.ephemeral()
    sessions = ["2022-12-01", "2022-12-02"]
    instance.add_dynamic_partitions(partitions_name(pipeline.spec), sessions)
    frame = features.to_pandas()
    trailing: dict[str, pd.DataFrame] = {}
    for session in sessions:
        day = pd.Timestamp(session).date()
        trailing[session] = frame[
            (frame["date"] > day - pd.Timedelta(days=30)) & (frame["date"] <= day)
        ]
        _upstream(
            instance,
            lake,
            "rps",
            pa.Table.from_pandas(trailing[session], preserve_index=False),
            model,
            session,
        )

    _predict(nodes, lake, instance, pipeline, sessions[1])
    stored = lake.read_arrow("rps", "predictions", None).to_pandas()
    assert set(stored["partition_key"]) == {sessions[1]}, "only the session that ran was written"
    check_predictions(stored.drop(columns="partition_key"), trailing[sessions[1]], model)

    _predict(nodes, lake, instance, pipeline, sessions[0])
    stored = lake.read_arrow("rps", "predictions", None).to_pandas()
    for session in sessions:
        check_predictions(
            stored[stored["partition_key"] == session].drop(columns="partition_key"),
            trailing[session],
            model,
        )
    assert instance.get_materialized_partitions(AssetKey(["rps", "predictions"])) == set(sessions)


def test_a_scikit_learn_model_predicts_every_row_it_can(
    nodes: RayNodes, lake: LakeIOManager
) -> None:
    """A ridge reads one row: no windows, no sort; rows with a null feature get a null forecast."""
    frame = compute(generate(symbols=4, start="2022-01-03", end="2022-09-30", seed=9)).to_pandas()
    estimator = pickle.loads(train(frame, TrainingJob(trainer="ridge", features=FEATURES)).model)
    frame.loc[::7, "vol_rank"] = np.nan  # stored as nulls: no forecast for those rows
    table = pa.Table.from_pandas(frame, preserve_index=False)
    written = lake.write_arrow("rp", "raw_features", table)
    node = Node(
        id="predict",
        kind=NodeKind.ray_job,
        ins=["model_uri", "features"],
        outs=["predictions"],
        params={"mode": "predict"},
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="rp", nodes=[node])
    inputs: dict[str, Any] = {
        "model_uri": Artifact(pickle.dumps(estimator), role="model", filename="model.bin"),
        "features": lake.table_ref("rp", "raw_features", written.snapshot_id),
    }
    with build_asset_context(resources={"ray": RayResource(address=nodes.address)}) as context:
        values = runner_for(NodeKind.ray_job, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs=inputs)
        )
    predictions = values["predictions"]
    assert isinstance(predictions, pa.Table) and predictions.num_rows == table.num_rows
    ours = predictions.to_pandas().set_index(["date", "symbol"])["prediction"]
    complete = frame.dropna(subset=FEATURES).set_index(["date", "symbol"])
    assert table.column("vol_rank").null_count == len(frame) - len(complete) > 0
    assert ours.isna().sum() == len(frame) - len(complete)
    np.testing.assert_allclose(
        ours.loc[complete.index].to_numpy(), estimator.predict(complete[FEATURES]), rtol=1e-9
    )


@pytest.mark.parametrize(
    ("cpu", "workers", "pool"),
    [
        (
            "8",
            2,
            ActorPool(actors=2, cpus_per_actor=1.0),
        ),  # 4 CPUs each asked, cut to the 1-CPU nodes
        ("1", 2, ActorPool(actors=2, cpus_per_actor=0.5)),
        ("2", 1, ActorPool(actors=1, cpus_per_actor=1.0)),
    ],
)
def test_the_actors_are_the_nodes_resources_cut_to_the_cluster(
    nodes: RayNodes, cpu: str, workers: int, pool: ActorPool
) -> None:
    node = Node(
        id="predict",
        kind=NodeKind.ray_job,
        params={"mode": "predict", "workers": workers},
        resources=Resources.model_validate({"cpu": cpu}),
        ins=["model_uri", "features"],
        outs=["predictions"],
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="rp", nodes=[node])
    assert (
        actor_pool(NodeRun(spec=spec, node=node, spec_dir=None), RayResource(address=nodes.address))
        == pool
    )


class _NoRayData(TableRef):
    """A table reference that fails the test if the step asks Ray Data to read it."""

    def to_ray_dataset(self, columns: Any = None) -> Any:
        raise AssertionError(
            "Ray Data was asked to read the table: work started before the columns were checked"
        )


def test_a_table_without_the_models_features_fails_before_any_ray_work(
    nodes: RayNodes, lake: LakeIOManager, features: pa.Table, model: bytes
) -> None:
    written = lake.write_arrow("rp", "no_vol", features.drop_columns(["vol_rank"]))
    ref = _NoRayData("rp", "no_vol", written.snapshot_id, lake.catalog())
    node = Node(
        id="predict",
        kind=NodeKind.ray_job,
        ins=["model_uri", "features"],
        outs=["predictions"],
        params={"mode": "predict"},
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="rp", nodes=[node])
    inputs: dict[str, Any] = {
        "model_uri": Artifact(model, role="model", filename="model.bin"),
        "features": ref,
    }
    with (
        build_asset_context(resources={"ray": RayResource(address=nodes.address)}) as context,
        pytest.raises(NodeRunError) as err,
    ):
        runner_for(NodeKind.ray_job, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs=inputs)
        )
    assert str(err.value) == (
        "rp.predict: the feature table rp.no_vol lacks column(s) ['vol_rank'] that model "
        "'model_uri' (bilstm) reads"
    )


def test_a_file_that_is_no_model_is_one_line(
    nodes: RayNodes, lake: LakeIOManager, features: pa.Table
) -> None:
    ref = _NoRayData("rp", "no_vol", None, lake.catalog())
    node = Node(
        id="predict",
        kind=NodeKind.ray_job,
        ins=["model_uri", "features"],
        outs=["predictions"],
        params={"mode": "predict"},
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="rp", nodes=[node])
    inputs: dict[str, Any] = {"model_uri": Artifact(b"not a model", role="model"), "features": ref}
    with (
        build_asset_context(resources={"ray": RayResource(address=nodes.address)}) as context,
        pytest.raises(NodeRunError) as err,
    ):
        runner_for(NodeKind.ray_job, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs=inputs)
        )
    assert str(err.value).startswith(
        "rp.predict: input 'model_uri' is neither a PyTorch model file nor a pickled scikit-learn "
        "model ("
    )
    assert "\n" not in str(err.value)
