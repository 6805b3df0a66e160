"""What lake maintenance must never remove, and who holds it.

Three holders, each written as an Iceberg tag on the snapshot it keeps (resources/
iceberg_maintenance.py), so every expiry, at commit time or in maintenance, in PyIceberg or in
Trino, keeps it:
- a run's refs (`quantos-pin/run/<run_id>`): written by the run's first step, and by
  maintenance for runs still queued; dropped by maintenance once the run has finished;
- a promoted model's training data (`quantos-pin/release/<pipeline>/<stage>`): written when a
  stage promotes, moved by the next promotion of that stage;
- what a running or next run reads without refs: each table's latest recorded snapshot, which
  maintenance keeps without a tag (a commit's own expiry keeps the newest ones anyway).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, RunsFilter
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from quantos_assets.spec.derived_names import PROMOTED
from quantos_assets.trainers.model_card import ModelCardError, training_snapshot
from resources.artifact_store import ArtifactStore
from resources.iceberg_maintenance import release_pin, run_pin
from resources.input_refs import RefError, pins_from_tags
from resources.run_tag_keys import TAG_PIPELINE

_log = logging.getLogger(__name__)

Table = tuple[str, str]


@dataclass(frozen=True)
class Pin:
    """`tag` holds `snapshot_id` of `table`; `why` says so in the audit trail."""

    table: Table
    snapshot_id: int
    tag: str
    why: str


def unfinished_runs_with_refs(instance: DagsterInstance) -> list[Any]:
    return [
        run
        for run in instance.get_runs(filters=RunsFilter(statuses=list(NOT_FINISHED_STATUSES)))
        if pins_from_tags_quietly(run.tags)
    ]


def pins_from_tags_quietly(tags: Mapping[str, str]) -> dict[str, Any]:
    try:
        return pins_from_tags(tags)
    except RefError:
        return {}  # the run's own steps refuse it; nothing to keep for it


def run_pins(run: Any, resolve: Any) -> tuple[list[Pin], list[str]]:
    """The snapshots an unfinished run's refs read (resolved now: `as_of` included); a ref the
    lake can no longer honour is a problem line (the run will fail on it), not a pin."""
    namespace = run.tags.get(TAG_PIPELINE)
    pins, problems = [], []
    for out, pin in pins_from_tags_quietly(run.tags).items():
        if not namespace:
            break
        try:
            snapshot_id = resolve(namespace, pin)
        except Exception as err:  # noqa: BLE001 - LakeIOError: one line, reported per run
            problems.append(f"run {run.run_id}: {str(err).splitlines()[0]}")
            continue
        pins.append(
            Pin((namespace, out), snapshot_id, run_pin(run.run_id), f"ref of run {run.run_id}")
        )
    return pins, problems


def release_pins(instance: DagsterInstance, store: ArtifactStore) -> tuple[list[Pin], list[str]]:
    """The training snapshot of every model a stage holds, from the stage's release record."""
    pins, problems = [], []
    for key, metadata in stage_materializations(instance):
        release = metadata.get("release")
        if release is None:
            continue
        pipeline_id, stage = key.path[0], key.path[2]
        try:
            record = json.loads(store.get(str(release.value)))
            snapshot = training_snapshot(record.get("model_card") or {})
        except (OSError, ValueError, ModelCardError) as err:
            problems.append(f"{key.to_user_string()}: release record unreadable: {err}")
            continue
        namespace, _, name = snapshot.table.partition(".")
        if namespace != pipeline_id:
            # The record is in the object store, which a team's step can write: a card naming
            # another pipeline's table must not pin that team's snapshots.
            problems.append(
                f"{key.to_user_string()}: training table {snapshot.table} is not the "
                f"pipeline's own: not pinned"
            )
            continue
        pins.append(
            Pin(
                (namespace, name),
                snapshot.snapshot_id,
                release_pin(pipeline_id, stage),
                f"training data of {pipeline_id}'s {stage} model",
            )
        )
    return pins, problems


def stage_materializations(instance: DagsterInstance) -> list[tuple[AssetKey, Mapping[str, Any]]]:
    """Each promotion stage's latest materialization metadata: what the stage holds."""
    held = []
    for key in instance.get_asset_keys():
        if len(key.path) != 3 or key.path[1] != PROMOTED:
            continue
        event = instance.get_latest_materialization_event(key)
        if event is not None and event.asset_materialization is not None:
            held.append((key, event.asset_materialization.metadata))
    return held


def latest_recorded(instance: DagsterInstance, tables: Iterable[Table]) -> dict[Table, int]:
    """Each table's snapshot as its asset's latest materialization recorded it: what a
    downstream step of a running (or the next) run reads."""
    recorded: dict[Table, int] = {}
    for table in tables:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(list(table))), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        value = materialization.metadata.get("snapshot_id") if materialization else None
        if value is not None and isinstance(value.value, int | str):
            recorded[table] = int(value.value)
    return recorded
