"""What the OpenLineage sensor knows about a node run, before it becomes an event.

Plain dataclasses, no openlineage import (that costs ~0.4 s and is paid only where events
are built, lineage_events.py): the sensor module imports this at code-location load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetRef:
    """One dataset a node read or wrote, as LakeIOManager recorded it in Dagster metadata.

    storage: "iceberg" (table + snapshot id), "artifact" (uri + sha256), or "unknown" (an
    upstream never materialized, e.g. a streaming node's output), named as an Iceberg table.
    """

    asset_key: tuple[str, ...]
    storage: str = "unknown"
    table: str | None = None
    snapshot_id: int | None = None
    uri: str | None = None
    sha256: str | None = None
    rows: int | None = None
    size: int | None = None
    columns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RunFacts:
    """The Dagster run a node event belongs to."""

    run_id: str
    pipeline_id: str
    created_at: float
    tags: Mapping[str, str] = field(default_factory=dict)
    team: str | None = None  # the spec's labels.team/owner, when the run carries no team tag


@dataclass(frozen=True)
class LineageNaming:
    """Namespaces: jobs by team (fallback `default_namespace`), tables by Iceberg warehouse."""

    warehouse: str
    default_namespace: str = "quantos"
    engine_version: str = ""


def dataset_ref(asset_key: Sequence[str], metadata: Mapping[str, Any]) -> DatasetRef:
    """A DatasetRef from materialization or LOADED_INPUT metadata (plain values)."""
    key = tuple(asset_key)
    if "sha256" in metadata or metadata.get("storage") == "artifact":
        # A promotion stage records its release record as `release` and the released
        # model's sha256: the stage's dataset is that record, versioned by what it releases.
        return DatasetRef(
            key,
            "artifact",
            uri=_str(metadata.get("uri") or metadata.get("release")),
            sha256=_str(metadata.get("sha256")),
            size=_int(metadata.get("bytes")),
        )
    if "snapshot_id" in metadata or metadata.get("storage") == "iceberg":
        return DatasetRef(
            key,
            "iceberg",
            table=_str(metadata.get("table")) or identifier(key),
            snapshot_id=_int(metadata.get("snapshot_id")),
            rows=_int(metadata.get("rows")),
            columns=tuple(metadata.get("columns") or ()),
        )
    return DatasetRef(key)


def identifier(key: Sequence[str]) -> str:
    """The Iceberg identifier LakeIOManager writes an asset to: `namespace.table`."""
    return f"{key[0]}.{key[-1]}"


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
