"""Reproducibility proof: retrain from the model card alone and compare artifact hashes.

The stored model must still hash to what its materialization recorded (nobody replaced
the object), and a retrain with the card's trainer, hyperparameters and seed on the card's
exact Iceberg snapshot must produce the same bytes. The retrain is a Ray task through the
same function the node used (kinds/ray_job.train_on_ray), so it proves the path, not a copy.

A deep-learning model (PyTorch on Ray Train) is proved by its metrics instead of its bytes:
it is retrained through the node's own path (trainers/ray_training.train_torch) on the same
snapshot, seed and worker count, and its test metrics must match the recorded ones within
TORCH_TOLERANCE. Floating-point sums over data-parallel workers need not be bit-identical
across runs; a model whose metrics move more than that is not reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from quantos_assets.gates.evidence import Materialized
from quantos_assets.kinds.ray_job import train_on_ray
from quantos_assets.trainers.model_card import (
    ModelCardError,
    training_job_from_card,
    training_snapshot,
)
from quantos_assets.trainers.ray_training import (
    CheckpointPlace,
    EarlyStopping,
    TorchPlacement,
    train_torch,
)
from quantos_assets.trainers.registry import TRAINERS
from quantos_assets.trainers.training import TrainingJob

# What "the same metrics" means for a torch model: |retrained - recorded| <= abs + rel * |recorded|.
TORCH_TOLERANCE = {"rel": 1e-3, "abs": 1e-6}
TORCH_COMPARED = ("best_val_loss", "mse", "ic", "r2")


@dataclass(frozen=True)
class Proof:
    passed: bool
    reason: str
    metadata: dict[str, Any] = field(default_factory=dict)


def prove_reproducible(model: Materialized, store: Any, lake: Any, ray: Any, log: Any) -> Proof:
    """`store`: the ArtifactStore; `lake`: the LakeIOManager (read_arrow); `ray`: the
    RayResource."""
    name = model.key.path[-1]
    card = model.card
    if card is None:
        return Proof(False, f"{name} has no model card: nothing records how to retrain it")
    if model.uri is None or model.sha256 is None:
        return Proof(False, f"{name} records no artifact URI and sha256")
    try:
        job = training_job_from_card(card)
        snapshot = training_snapshot(card)
    except ModelCardError as err:
        return Proof(False, str(err))
    try:
        stored = hashlib.sha256(store.get(model.uri)).hexdigest()
    except OSError as err:
        return Proof(False, f"the stored model cannot be read: {err}")
    if stored != model.sha256:
        return Proof(
            False,
            f"the stored model {model.uri} hashes to {stored[:12]}, its materialization recorded "
            f"{model.sha256[:12]}: the object was replaced after training",
            {"recorded_sha256": model.sha256, "stored_sha256": stored},
        )
    namespace, _, table_name = snapshot.table.partition(".")
    trainer = TRAINERS.get(job.trainer)
    if trainer is not None and trainer.framework == "torch":
        return _prove_torch(
            model, card, job, snapshot.table, snapshot.snapshot_id, store, lake, ray, log
        )
    try:
        table = lake.read_arrow(namespace, table_name, snapshot.snapshot_id)
    except Exception as err:  # noqa: BLE001 - any lake error means the inputs are gone: one line
        return Proof(
            False,
            f"the training snapshot {snapshot.table}@{snapshot.snapshot_id} cannot be read: {err}",
        )
    where = f"seed {job.seed} on {snapshot.table}@{snapshot.snapshot_id}"
    log.info(f"gate {model.key.to_user_string()}: retraining '{job.trainer}' with {where}")
    result = train_on_ray(ray.init(), table, job, f"{model.key.to_user_string()} reproducibility")
    retrained = hashlib.sha256(result.model).hexdigest()
    metadata = {
        "recorded_sha256": model.sha256,
        "retrained_sha256": retrained,
        "seed": job.seed,
        "training_snapshot": f"{snapshot.table}@{snapshot.snapshot_id}",
    }
    if retrained == model.sha256:
        return Proof(True, f"retrained with {where}: sha256 {retrained[:12]} matches", metadata)
    drift = _environment_drift(card.get("environment") or {}, result.environment)
    return Proof(
        False,
        f"retrained with {where}: sha256 {retrained[:12]} differs from the recorded "
        f"{model.sha256[:12]}{drift}",
        metadata,
    )


def _prove_torch(
    model: Materialized,
    card: dict[str, Any],
    job: TrainingJob,
    table: str,
    snapshot_id: int,
    store: Any,
    lake: Any,
    ray: Any,
    log: Any,
) -> Proof:
    import uuid

    recorded = card.get("metrics") or {}
    training = card.get("training") or {}
    namespace, _, table_name = table.partition(".")
    where = f"seed {job.seed} on {table}@{snapshot_id} with {training.get('workers', 1)} worker(s)"
    try:
        ref = lake.table_ref(namespace, table_name, snapshot_id)
        ref.schema()
    except Exception as err:  # noqa: BLE001 - any lake error means the inputs are gone: one line
        return Proof(False, f"the training snapshot {table}@{snapshot_id} cannot be read: {err}")
    ray.init()
    # A fresh run name: the original run's checkpoints must not be resumed from.
    relpath = f"checkpoints/{model.key.path[0]}/reproducibility/{uuid.uuid4().hex[:12]}"
    path, filesystem = store.filesystem_path(relpath)
    stopping = training.get("early_stopping")
    log.info(f"gate {model.key.to_user_string()}: retraining '{job.trainer}' with {where}")
    result = train_torch(
        ref.to_ray_dataset(),
        job,
        TorchPlacement(
            workers=int(training.get("workers", 1)),
            cpus_per_worker=float(training.get("cpus_per_worker", 1.0)),
            use_gpu=bool(training.get("gpus_per_worker")),
            min_workers=int(training.get("workers", 1)),
        ),
        CheckpointPlace(
            path=path, name=model.key.path[-1], uri=store.uri_for(relpath), filesystem=filesystem
        ),
        EarlyStopping(**stopping) if stopping else None,
    )
    now = _compared({**result.metrics, **result.metrics["training"]})
    then = _compared({**recorded, "best_val_loss": training.get("best_val_loss")})
    metadata = {
        "recorded": then,
        "retrained": now,
        "tolerance": TORCH_TOLERANCE,
        "seed": job.seed,
        "training_snapshot": f"{table}@{snapshot_id}",
    }
    off = [
        f"{k} {now[k]:.6g} vs {then[k]:.6g}"
        for k in TORCH_COMPARED
        if k in now
        and k in then
        and abs(now[k] - then[k]) > TORCH_TOLERANCE["abs"] + TORCH_TOLERANCE["rel"] * abs(then[k])
    ]
    if not off:
        return Proof(
            True,
            f"retrained with {where}: metrics match within rel {TORCH_TOLERANCE['rel']:g}",
            metadata,
        )
    drift = _environment_drift(card.get("environment") or {}, result.environment)
    return Proof(
        False,
        f"retrained with {where}: {'; '.join(off)} (beyond rel {TORCH_TOLERANCE['rel']:g}){drift}",
        metadata,
    )


def _compared(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(metrics[k]) for k in TORCH_COMPARED if isinstance(metrics.get(k), (int, float))
    }


def _environment_drift(then: dict[str, Any], now: dict[str, str]) -> str:
    changed = [
        f"{k} {then.get(k)} then, {v} now" for k, v in sorted(now.items()) if then.get(k) != v
    ]
    return (
        f" ({'; '.join(changed)})"
        if changed
        else " (same library versions: the training is not deterministic)"
    )
