"""The model card a trained model carries: who owns it, what it is, and how to rebuild it.

A promotion gate refuses a model without one (the firm's policy lists the required
fields), and the reproducibility check retrains from it alone: trainer, hyperparameters,
seed, features and the exact training snapshot are all here, so a retrain does not
depend on the spec still saying what it said when the model was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quantos_assets.spec.models import DagSpec, Node
from quantos_assets.trainers.registry import TRAINERS
from quantos_assets.trainers.training import TrainingJob, TrainingResult

# The metadata key of the card on the model's materialization.
MODEL_CARD = "model_card"
CARD_VERSION = 1
HEADLINE_METRICS = ("ic", "ic_ir", "hit_rate", "r2", "mse", "sharpe", "max_drawdown", "ann_return")


class ModelCardError(ValueError):
    """The card cannot drive a retrain (one-line message)."""


@dataclass(frozen=True)
class TrainingSnapshot:
    """The table a model was trained on, exactly: a name and an Iceberg snapshot."""

    input: str
    table: str
    snapshot_id: int


def build_model_card(
    *,
    spec: DagSpec,
    node: Node,
    job: TrainingJob,
    result: TrainingResult,
    training_data: Mapping[str, Any],
    code_version: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    m = result.metrics
    trainer = TRAINERS[job.trainer]
    # How it trained (torch trainers): framework, workers, GPUs, epochs run, the best
    # checkpoint, restarts. The per-epoch history stays in the metrics artifact.
    training = {
        k: v for k, v in (m.get("training") or {}).items() if k not in ("history", "seconds")
    }
    return {
        "card_version": CARD_VERSION,
        "model": f"{spec.pipeline_id}/{node.outs[0]}",
        "pipeline_id": spec.pipeline_id,
        "node": node.id,
        "owner": spec.labels.get("owner") or spec.labels.get("team"),
        "description": spec.description,
        "trainer": job.trainer,
        "framework": "pytorch" if trainer.framework == "torch" else "scikit-learn",
        "trainer_description": trainer.description,
        "hyperparameters": m["hyperparameters"],
        "seed": job.seed,
        "features": list(job.features),
        "target": job.target,
        "date_column": job.date_column,
        "test_fraction": job.test_fraction,
        "return_column": job.return_column,
        "symbol_column": job.symbol_column,
        "training_data": dict(training_data),
        "training": training,
        # The search that chose the hyperparameters: its space and every trial's params and
        # validation metrics (the best one is marked); None when nothing was searched.
        "search": m.get("search"),
        "code_version": dict(code_version or {}),
        "train_window": {"start": m["train_start"], "end": m["train_end"], "rows": m["n_train"]},
        "test_window": {"start": m["test_start"], "end": m["test_end"], "rows": m["n_test"]},
        "metrics": {k: m[k] for k in HEADLINE_METRICS if k in m},
        "environment": dict(result.environment),
    }


def missing_fields(card: Mapping[str, Any] | None, required: list[str]) -> list[str]:
    """Required fields absent or empty (None, "", [] and {} say nothing)."""
    if card is None:
        return list(required)
    return [f for f in required if card.get(f) in (None, "", [], {})]


def training_job_from_card(card: Mapping[str, Any]) -> TrainingJob:
    """The job that trained the model, as the card recorded it."""
    try:
        return TrainingJob(
            trainer=str(card["trainer"]),
            features=[str(f) for f in card["features"]],
            target=str(card["target"]),
            date_column=str(card["date_column"]),
            test_fraction=float(card["test_fraction"]),
            seed=int(card["seed"]),
            hyperparameters=dict(card["hyperparameters"]),
            return_column=card.get("return_column"),
            symbol_column=str(card.get("symbol_column") or "symbol"),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelCardError(
            f"the model card cannot rebuild the training job: {_why(err)}"
        ) from None


def training_snapshot(card: Mapping[str, Any]) -> TrainingSnapshot:
    data = card.get("training_data") or {}
    if not isinstance(data, Mapping) or data.get("snapshot_id") is None or not data.get("table"):
        raise ModelCardError(
            "the model card records no training snapshot (training_data has no table/snapshot_id)"
        )
    return TrainingSnapshot(
        input=str(data.get("input")), table=str(data["table"]), snapshot_id=int(data["snapshot_id"])
    )


def _why(err: Exception) -> str:
    return f"no field {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
