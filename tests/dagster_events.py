"""Typed reads of what a test's runs left in a Dagster instance."""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, DagsterInstance


def latest_metadata(instance: DagsterInstance, key: AssetKey) -> dict[str, Any]:
    """The metadata values of the asset's latest materialization, which must exist."""
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None, (
        f"{key.to_user_string()} was never materialized"
    )
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
