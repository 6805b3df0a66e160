"""What a gate judges: the model's latest materialization, its card and its metrics.

Read from the instance (not loaded through the IO manager) because the storage id and run
of the materialization matter: a stage promotes only the exact materialization its checks
passed on, and metrics from another run than the model say nothing about it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, DagsterInstance

from quantos_assets.trainers.model_card import MODEL_CARD


@dataclass(frozen=True)
class Materialized:
    key: AssetKey
    storage_id: int
    run_id: str
    metadata: dict[str, Any]

    @property
    def sha256(self) -> str | None:
        value = self.metadata.get("sha256")
        return str(value) if value else None

    @property
    def uri(self) -> str | None:
        value = self.metadata.get("uri")
        return str(value) if value else None

    @property
    def card(self) -> dict[str, Any] | None:
        card = self.metadata.get(MODEL_CARD)
        return card if isinstance(card, dict) else None


def latest(instance: DagsterInstance, key: AssetKey) -> Materialized | None:
    records = instance.fetch_materializations(key, limit=1).records
    if not records:
        return None
    record = records[0]
    materialization = record.asset_materialization
    if materialization is None:
        return None
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    return Materialized(
        key=key, storage_id=record.storage_id, run_id=record.run_id, metadata=metadata
    )


def read_metrics(
    store: Any, model: Materialized, metrics: Materialized | None
) -> tuple[dict[str, Any] | None, str]:
    """(metrics document, "") or (None, why it cannot be judged)."""
    name = model.key.path[-1]
    if metrics is None:
        return None, f"{name} has no metrics: its metrics out was never materialized"
    if metrics.run_id != model.run_id:
        return None, (
            f"{metrics.key.path[-1]} is from run {metrics.run_id[:8]}, {name} from run "
            f"{model.run_id[:8]}: "
            "rematerialize the model's node so both come from one run"
        )
    if metrics.uri is None:
        return None, f"{metrics.key.path[-1]} records no artifact URI"
    try:
        document = json.loads(store.get(metrics.uri))
    except (OSError, ValueError) as err:
        return None, f"{metrics.key.path[-1]} at {metrics.uri} cannot be read as JSON: {err}"
    if not isinstance(document, dict):
        return None, f"{metrics.key.path[-1]} is not a JSON object of metric names to values"
    return document, ""
