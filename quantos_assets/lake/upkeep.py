"""One pass of lake maintenance over the pipelines' tables: pins, ttl, compaction, expiry,
orphans; every action one audit record.

Order per table matters: pins first (so nothing below can remove a pinned snapshot), then the
ttl's deletions (which make the run's snapshots non-current), compaction (whose replaced files
stay readable through the older snapshots until those expire), expiry, and orphans last (the
files expiry freed are already gone; what remains unnamed is a failed writer's).

A table another writer commits to during the pass is skipped until the next pass: each
action commits on exactly the state it read (resources/iceberg_maintenance.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import DagsterInstance
from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError
from pyiceberg.table import Table

from quantos_assets.lake.pins import (
    Pin,
    latest_recorded,
    release_pins,
    run_pins,
    stage_materializations,
    unfinished_runs_with_refs,
)
from quantos_assets.lake.ttl import PastTtl, mark_done, runs_past_ttl
from resources.artifact_store import ArtifactStore
from resources.audit_log import AuditLog
from resources.iceberg_maintenance import (
    RELEASE_PIN,
    RUN_PIN,
    check_location,
    compact,
    delete_rows,
    expire,
    pin_tags,
    protected_snapshots,
    remove_orphans,
    set_pins,
)
from resources.lake_io_manager import LakeIOManager
from resources.lake_upkeep_settings import LakeUpkeep

ACTOR = "quantos-lake"
_log = logging.getLogger("quantos.lake")


@dataclass(frozen=True)
class Action:
    """One thing maintenance did (or declined to do), as the audit trail records it."""

    action: str  # lake.pin | lake.unpin | lake.ttl | lake.compact | lake.expire | lake.orphans
    subject: str  # namespace.table, or the run for a ttl's artifacts
    team: str
    decision: str  # done | kept | skipped
    detail: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class UpkeepReport:
    """`problems`: tables the pass could not maintain; `notes`: what it saw and need not fix
    (a queued run's ref the lake can no longer honour: that run fails on it by itself)."""

    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Record = Callable[[Action], None]


@dataclass
class Upkeep:
    """`pipelines`: pipeline_id -> team, the namespaces maintained (tables no pipeline of ours
    writes, e.g. a vendor's, are not ours to expire)."""

    instance: DagsterInstance
    lake: LakeIOManager
    store: ArtifactStore
    pipelines: Mapping[str, str]
    settings: LakeUpkeep
    now: datetime
    record: Record
    # Plan only: every action reported as `planned`, nothing committed, deleted or audited.
    dry_run: bool = False
    report: UpkeepReport = field(default_factory=UpkeepReport)

    def run(self) -> UpkeepReport:
        pins = self._pins()
        past_ttl = runs_past_ttl(self.instance, self.now)
        ttl_by_table: dict[tuple[str, str], list[PastTtl]] = {}
        for item in past_ttl:
            for table in item.tables:
                ttl_by_table.setdefault(table, []).append(item)
        tables = list(self._tables())
        recorded = latest_recorded(self.instance, tables)
        for identifier in tables:
            self._table(identifier, pins, ttl_by_table.get(identifier, []), recorded)
        self._ttl_artifacts(past_ttl, pins)
        return self.report

    # -- what is pinned ------------------------------------------------------------------------

    def _pins(self) -> dict[tuple[str, str], list[Pin]]:
        found: list[Pin] = []
        for run in unfinished_runs_with_refs(self.instance):
            pins, problems = run_pins(run, self.lake.pinned_snapshot)
            found += pins
            self.report.notes += problems
        pins, problems = release_pins(self.instance, self.store)
        found += pins
        self.report.problems += problems
        by_table: dict[tuple[str, str], list[Pin]] = {}
        for pin in found:
            by_table.setdefault(pin.table, []).append(pin)
        return by_table

    def _tables(self) -> Iterable[tuple[str, str]]:
        catalog = self.lake.catalog()
        for namespace in sorted(self.pipelines):
            try:
                listed = catalog.list_tables(namespace)
            except NoSuchNamespaceError:
                continue
            yield from sorted((namespace, name) for *_, name in listed)

    # -- one table -----------------------------------------------------------------------------

    def _table(
        self,
        identifier: tuple[str, str],
        pins: Mapping[tuple[str, str], list[Pin]],
        past_ttl: list[PastTtl],
        recorded: Mapping[tuple[str, str], int],
    ) -> None:
        name = ".".join(identifier)
        team = self.pipelines.get(identifier[0], "-")
        try:
            self._pin(identifier, pins.get(identifier, []), team)
            expiring = self._ttl(identifier, past_ttl, team)
            self._compact(identifier, team)
            self._expire(identifier, expiring, recorded.get(identifier), team)
            self._orphans(identifier, team)
        except CommitFailedException:
            self._did(
                "lake.skip", name, team, "skipped", "another writer committed during the pass"
            )
        except Exception as err:  # noqa: BLE001 - one table's trouble must not stop the pass
            line = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.report.problems.append(f"{name}: {line}")
            _log.warning("lake maintenance of %s failed: %s", name, line)

    def _own_folder(self, identifier: tuple[str, str]) -> str:
        """Where the catalog puts a table it creates: `<warehouse>/<namespace>/<table>`."""
        warehouse = str(self.lake.catalog().properties.get("warehouse", "")).rstrip("/")
        return f"{warehouse}/{identifier[0]}/{identifier[1]}"

    def _load(self, identifier: tuple[str, str]) -> Table:
        return self.lake.catalog().load_table(identifier)

    def _pin(self, identifier: tuple[str, str], pins: list[Pin], team: str) -> None:
        table = self._load(identifier)
        wanted = {pin.tag: pin.snapshot_id for pin in pins}
        held = pin_tags(table)
        stale = [tag for tag in held if tag not in wanted and self._released(tag)]
        if not self.dry_run:
            set_pins(table, wanted, stale)
        name = ".".join(identifier)
        for pin in pins:
            if held.get(pin.tag) != pin.snapshot_id:
                self._did(
                    "lake.pin",
                    name,
                    team,
                    "done",
                    f"snapshot {pin.snapshot_id} pinned: {pin.why}",
                    {"tag": pin.tag, "snapshot_id": pin.snapshot_id},
                )
        for tag in stale:
            self._did(
                "lake.unpin",
                name,
                team,
                "done",
                f"snapshot {held[tag]} no longer pinned by {tag}",
                {"tag": tag, "snapshot_id": held[tag]},
            )

    def _released(self, tag: str) -> bool:
        """A tag no holder needs any more: its run has finished (or is unknown), or its stage
        no longer holds a model trained there (it would be in `wanted` otherwise)."""
        if tag.startswith(RUN_PIN):
            run = self.instance.get_run_by_id(tag[len(RUN_PIN) :])
            return run is None or run.is_finished
        return tag.startswith(RELEASE_PIN)

    def _ttl(self, identifier: tuple[str, str], past_ttl: list[PastTtl], team: str) -> set[int]:
        """Delete what is still the expired runs' own; the snapshots they wrote, to expire."""
        expiring: set[int] = set()
        name = ".".join(identifier)
        for item in past_ttl:
            writes = item.tables[identifier]
            expiring.update(w.snapshot_id for w in writes)
            own = [w for w in writes if w.still_latest]
            if not own:
                continue
            table = self._load(identifier)
            partitions = sorted({w.partition for w in own if w.partition is not None})
            whole = any(w.partition is None for w in own)
            if whole and table.metadata.current_snapshot_id not in {w.snapshot_id for w in own}:
                whole = False  # rewritten since by something that is not a materialization
            if not whole and not partitions:
                continue
            snapshot_id = (
                0 if self.dry_run else delete_rows(table, identifier, None if whole else partitions)
            )
            what = "every row" if whole else f"sessions {', '.join(partitions)}"
            self._did(
                "lake.ttl",
                name,
                item.team,
                "done",
                f"{what} of run {item.run_id} deleted: ttl_days {item.ttl_days} passed",
                {"run_id": item.run_id, "snapshot_id": snapshot_id, "partitions": partitions},
            )
        return expiring

    def _compact(self, identifier: tuple[str, str], team: str) -> None:
        done = compact(
            self._load(identifier),
            identifier,
            self.settings.compact_min_files,
            self.settings.small_file_mb * 1024 * 1024,
            self.dry_run,
        )
        for item in done:
            where = f"session {item.partition}" if item.partition else "the table"
            self._did(
                "lake.compact",
                ".".join(identifier),
                team,
                "done",
                f"{where}: {item.files_before} files rewritten as {item.files_after}",
                {
                    "partition": item.partition,
                    "files_before": item.files_before,
                    "rows": item.rows,
                    "snapshot_id": item.snapshot_id,
                },
            )

    def _expire(
        self, identifier: tuple[str, str], ttl: set[int], recorded: int | None, team: str
    ) -> None:
        table = self._load(identifier)
        check_location(table, self._own_folder(identifier))
        cutoff_ms = (self.now - timedelta(days=self.settings.snapshot_days)).timestamp() * 1000
        old = {s.snapshot_id for s in table.snapshots() if s.timestamp_ms < cutoff_ms}
        # The latest recorded snapshot is what the next read of the table gets: kept, unless a
        # ttl expires it (then reading it fails as expired, which is what the ttl asked for).
        still_read = {recorded} - ttl if recorded is not None else set()
        candidates = (old - still_read) | ttl
        kept = sorted((candidates & protected_snapshots(table)) | (old & still_read))
        expired, freed = expire(table, candidates, self.dry_run)
        name = ".".join(identifier)
        if expired:
            self._did(
                "lake.expire",
                name,
                team,
                "done",
                f"{len(expired)} snapshot(s) expired, {freed.files} file(s) "
                f"({freed.bytes} bytes) deleted",
                {"snapshot_ids": expired, "files": freed.files, "bytes": freed.bytes},
            )
        if kept:
            self._did(
                "lake.expire",
                name,
                team,
                "kept",
                f"{len(kept)} snapshot(s) due to expire kept: pinned or still read",
                {"snapshot_ids": kept},
            )

    def _orphans(self, identifier: tuple[str, str], team: str) -> None:
        grace = timedelta(hours=self.settings.orphan_grace_hours)
        table = self._load(identifier)
        check_location(table, self._own_folder(identifier))
        removed, freed = remove_orphans(table, self.now - grace, self.dry_run)
        if removed:
            self._did(
                "lake.orphans",
                ".".join(identifier),
                team,
                "done",
                f"{freed.files} orphaned file(s) ({freed.bytes} bytes) deleted",
                {"files": removed[:50], "count": len(removed), "bytes": freed.bytes},
            )

    # -- a ttl's artifacts ---------------------------------------------------------------------

    def _ttl_artifacts(
        self, past_ttl: list[PastTtl], pins: Mapping[tuple[str, str], list[Pin]]
    ) -> None:
        held = self._released_models()
        for item in past_ttl:
            deleted = [
                uri
                for uri in item.artifacts
                if uri not in held and (self.dry_run or self.store.delete(uri))
            ]
            kept = [uri for uri in item.artifacts if uri in held]
            if deleted or kept:
                self._did(
                    "lake.ttl",
                    f"run {item.run_id}",
                    item.team,
                    "done",
                    f"{len(deleted)} artifact(s) deleted"
                    + (f", {len(kept)} kept: a stage holds the model" if kept else ""),
                    {"run_id": item.run_id, "deleted": deleted, "kept": kept},
                )
            if not self.dry_run:
                mark_done(self.instance, item.run_id, self.now)

    def _released_models(self) -> set[str]:
        uris = (m.get("model_uri") for _, m in stage_materializations(self.instance))
        return {str(uri.value) for uri in uris if uri is not None}

    def _did(
        self,
        action: str,
        subject: str,
        team: str,
        decision: str,
        detail: str,
        params: dict[str, Any] | None = None,
    ) -> None:
        if self.dry_run and decision == "done":
            decision = "planned"
        done = Action(action, subject, team, decision, detail, params or {})
        self.report.actions.append(done)
        _log.info("%s %s: %s", action, subject, detail)
        if not self.dry_run:
            self.record(done)


def maintain(
    instance: DagsterInstance,
    lake: LakeIOManager,
    store: ArtifactStore,
    trail: AuditLog | None,
    pipelines: Mapping[str, str],
    settings: LakeUpkeep,
    now: datetime | None = None,
    dry_run: bool = False,
) -> UpkeepReport:
    """One pass; each action appended to `trail` as it is taken (None: no trail configured,
    the actions are then in the report and the log only). `dry_run`: the plan, nothing done."""

    def record(action: Action) -> None:
        if trail is not None:
            trail.append(
                actor=ACTOR,
                team=action.team,
                action=action.action,
                subject=action.subject,
                decision=action.decision,
                detail=action.detail,
                params=action.params,
            )

    when = now or datetime.now(UTC)
    return Upkeep(instance, lake, store, pipelines, settings, when, record, dry_run).run()
