"""Reproducibility proof: retrain from the model card alone and compare artifact hashes.

The stored model must still hash to what its materialization recorded (nobody replaced
the object), and a retrain with the card's trainer, hyperparameters and seed on the card's
exact Iceberg snapshot must produce the same bytes. The retrain is a Ray task through the
same function the node used (kinds/ray_job.train_on_ray), so it proves the path, not a copy.
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


@dataclass(frozen=True)
class Proof:
    passed: bool
    reason: str
    metadata: dict[str, Any] = field(default_factory=dict)


def prove_reproducible(model: Materialized, store: Any, lake: Any, ray: Any, log: Any) -> Proof:
    """`store`: the ArtifactStore; `lake`: the LakeIOManager (read_arrow); `ray`: the RayResource."""
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
    try:
        table = lake.read_arrow(namespace, table_name, snapshot.snapshot_id)
    except Exception as err:  # noqa: BLE001 - any lake error means the inputs are gone: one line
        return Proof(False, f"the training snapshot {snapshot.table}@{snapshot.snapshot_id} cannot be read: {err}")
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
        f"retrained with {where}: sha256 {retrained[:12]} differs from the recorded {model.sha256[:12]}{drift}",
        metadata,
    )


def _environment_drift(then: dict[str, Any], now: dict[str, str]) -> str:
    changed = [f"{k} {then.get(k)} then, {v} now" for k, v in sorted(now.items()) if then.get(k) != v]
    return f" ({'; '.join(changed)})" if changed else " (same library versions: the training is not deterministic)"
