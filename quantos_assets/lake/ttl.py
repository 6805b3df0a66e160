"""What a run with `ttl_days` wrote, once that many days have passed since it finished.

A submission's `runtime_params.ttl_days` (the `quantos/ttl_days` run tag) says how long its
outputs are kept: a backtest's tables and reports, not the platform's history. Maintenance
expires the snapshots the run committed, deletes the rows that are still the run's own
(a partition or table whose latest write was the run), and deletes the run's artifacts
(except a model a stage holds). A run is handled once: it is then tagged `quantos/ttl_expired`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, RunsFilter
from dagster._core.storage.dagster_run import FINISHED_STATUSES

from resources.run_tag_keys import TAG_PIPELINE, TAG_TEAM, TAG_TTL, TAG_TTL_EXPIRED

Table = tuple[str, str]


@dataclass(frozen=True)
class Written:
    """One table write of the run: its snapshot and partition (None: the whole table);
    `still_latest`: the table's (or partition's) latest materialization is this write."""

    snapshot_id: int
    partition: str | None
    still_latest: bool


@dataclass
class PastTtl:
    run_id: str
    pipeline_id: str
    team: str
    ttl_days: int
    ended: datetime
    tables: dict[Table, list[Written]] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)


def runs_past_ttl(instance: DagsterInstance, now: datetime) -> list[PastTtl]:
    """Finished runs whose ttl_days have passed and that maintenance has not handled yet."""
    found: list[PastTtl] = []
    for _, values in instance.get_run_tags(tag_keys=[TAG_TTL]):
        for value in sorted(values):
            if not value.isdigit():
                continue
            days = int(value)
            cutoff = now - timedelta(days=days)
            records = instance.get_run_records(
                filters=RunsFilter(
                    tags={TAG_TTL: value}, statuses=list(FINISHED_STATUSES), updated_before=cutoff
                )
            )
            for record in records:
                run = record.dagster_run
                ended = _ended(record)
                if TAG_TTL_EXPIRED in run.tags or ended is None or ended > cutoff:
                    continue
                item = PastTtl(
                    run.run_id,
                    run.tags.get(TAG_PIPELINE, ""),
                    run.tags.get(TAG_TEAM, "-"),
                    days,
                    ended,
                )
                _collect_outputs(instance, item)
                found.append(item)
    return found


def mark_done(instance: DagsterInstance, run_id: str, now: datetime) -> None:
    instance.add_run_tags(run_id, {TAG_TTL_EXPIRED: now.date().isoformat()})


def _ended(record: object) -> datetime | None:
    end = getattr(record, "end_time", None)
    if end is None:
        return None
    return datetime.fromtimestamp(float(end), UTC)


def _collect_outputs(instance: DagsterInstance, item: PastTtl) -> None:
    events = instance.get_records_for_run(
        item.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for event in events:
        materialization = event.event_log_entry.asset_materialization
        if materialization is None:
            continue
        metadata = materialization.metadata
        storage = metadata.get("storage")
        if storage is not None and storage.value == "artifact" and "uri" in metadata:
            item.artifacts.append(str(metadata["uri"].value))
            continue
        if storage is None or storage.value != "iceberg" or "snapshot_id" not in metadata:
            continue
        key = materialization.asset_key
        table = (key.path[0], key.path[-1])
        partition = materialization.partition
        item.tables.setdefault(table, []).append(
            Written(
                int(str(metadata["snapshot_id"].value)),
                partition,
                _latest_run(instance, key, partition) == item.run_id,
            )
        )


def _latest_run(instance: DagsterInstance, key: AssetKey, partition: str | None) -> str | None:
    partitions: Sequence[str] | None = [partition] if partition is not None else None
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1
    ).records
    return records[0].run_id if records else None
