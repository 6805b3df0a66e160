"""ray_job on a local Ray: a real training run, a loadable model, sensible metrics."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from dagster import build_asset_context
from profiles import runners

from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from quantos_assets.tasks.features import compute
from quantos_assets.tasks.market_data import generate
from resources.artifact import Artifact
from resources.ray_cluster import RayResource

pytestmark = pytest.mark.integration

RAY = RayResource(num_cpus=2)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray = RAY.init()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def features() -> pa.Table:
    return compute(generate(symbols=30, start="2022-01-03", end="2023-06-30", seed=11))


def train(table: pa.Table, outs: list[str] | None = None, **params: Any) -> dict[str, Any]:
    node = Node(
        id="train_model",
        kind=NodeKind.ray_job,
        params=params,
        ins=["features"],
        outs=outs or ["model_uri", "metrics_json"],
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="kinds_ray", nodes=[node])
    with build_asset_context(resources={"ray": RAY}) as context:
        return runner_for(NodeKind.ray_job, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs={"features": table})
        )


def test_gradient_boosting_model_and_metrics(ray_session: None, features: pa.Table) -> None:
    params: dict[str, Any] = {
        "trainer": "gradient_boosting",
        "seed": 42,
        "n_estimators": 60,
        "test_fraction": 0.25,
    }
    values = train(features, **params)
    model, report = values["model_uri"], values["metrics_json"]
    assert isinstance(model, Artifact) and (model.role, model.filename) == ("model", "model.bin")
    assert isinstance(report, Artifact) and (report.role, report.filename) == (
        "report",
        "metrics.json",
    )

    metrics = json.loads(report.data)
    assert metrics["trainer"] == "gradient_boosting" and metrics["seed"] == 42
    assert metrics["n_train"] > 2 * metrics["n_test"] > 0
    assert metrics["test_start"] > metrics["train_end"], "time-ordered split"
    assert -1 <= metrics["ic"] <= 1 and -1 <= metrics["ic_pooled"] <= 1
    assert metrics["r2"] < 0.5 and metrics["ic_days"] > 50
    assert "fwd_return_1d" not in metrics["features"] and "mom_rank" in metrics["features"]

    estimator = pickle.loads(model.data)
    frame = features.to_pandas().dropna()
    predictions = estimator.predict(frame[list(estimator.feature_names_in_)])
    assert len(predictions) == len(frame) and predictions.std() > 0

    again = train(features, **params)
    assert again["model_uri"].data == model.data, "same seed and data, same model bytes"


def test_ridge_with_chosen_features_and_model_only(ray_session: None, features: pa.Table) -> None:
    values = train(
        features, outs=["model"], trainer="ridge", alpha=10.0, features=["mom_rank", "rev_rank"]
    )
    estimator = pickle.loads(values["model"].data)
    assert list(estimator.feature_names_in_) == ["mom_rank", "rev_rank"]
    assert estimator.named_steps["ridge"].alpha == 10.0


def test_unknown_trainer_is_one_line(features: pa.Table) -> None:
    with pytest.raises(NodeRunError) as err:
        train(features, trainer="transformer", epochs=30)
    assert str(err.value) == (
        "kinds_ray.train_model: trainer 'transformer' is not in the local registry "
        "(bilstm, gradient_boosting, mlp, ridge)"
    )


def test_bad_params_fail_before_training(features: pa.Table) -> None:
    with pytest.raises(
        NodeRunError, match=r"params \['epochs'\] are not hyperparameters of trainer 'ridge'"
    ):
        train(features, trainer="ridge", epochs=30)
    with pytest.raises(NodeRunError, match=r"the input table has no column\(s\) \['label'\]"):
        train(features, trainer="ridge", target="label")
