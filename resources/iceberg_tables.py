"""PyIceberg table helpers for the lake IO manager: open, write one commit, read one snapshot.

Why not plain `Table.append`/`Table.overwrite`: they re-cast every record batch and bin-pack
before writing, which measured 1.25-1.47x the time of `pq.write_table`, and a fast append per
materialization grows the manifest list by one manifest per commit. Here we write the Parquet
file ourselves (same codec, field ids embedded so the file is self-describing), build the
`DataFile` from the footer we already hold, and commit it through a merge-append (or an
overwrite when files must be replaced) in ONE transaction. Reads of flat tables go straight to
`pq.read_table` per planned file; anything unusual falls back to PyIceberg's scan.

A small commit's cost (issue 19 point 4) is PyIceberg's bookkeeping, not data: the transaction
computes its metadata once per staged state (_MetadataOnceTransaction) and the parent
snapshot's manifests are read once per write (_read_parent, _ReplaceFiles).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Imported with this module, not by a run's first commit: PyIceberg's schema check imports
# rich lazily, SQLAlchemy the SQLite dialect on create_engine (~35 ms together, measured). A
# code location is loaded once and forked per run (warm launcher, forkserver), so here they
# are paid once per location instead of by every run's first write.
import rich.console
import rich.table  # noqa: F401
import sqlalchemy.dialects.sqlite  # noqa: F401
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, EqualTo, In, Reference
from pyiceberg.expressions.literals import literal
from pyiceberg.expressions.visitors import (
    expression_evaluator,
    inclusive_projection,
    manifest_evaluator,
)
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible,
    _dataframe_to_data_files,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    schema_to_pyarrow,
)
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Operation, Snapshot
from pyiceberg.table.update import TableUpdate, update_table_metadata
from pyiceberg.table.update.snapshot import ExpireSnapshots, _MergeAppendFiles, _OverwriteFiles
from pyiceberg.transforms import IdentityTransform
from pyiceberg.typedef import Record
from pyiceberg.types import NestedField

# The column a partitioned materialization is stored under (identity-partitioned in Iceberg,
# so replacing one partition drops whole files and never rewrites data).
PARTITION_COLUMN = "partition_key"
PARQUET_CODEC = "zstd"
_FIELD_ID_KEY = b"PARQUET:field_id"
# Rows per data file before a write is split across cores (= pyarrow's default row group).
ROWS_PER_FILE = 1024 * 1024
# Commits are optimistic (the catalog row moves only if nobody committed in between); on a
# conflict the whole write is redone from a fresh load, after a jittered exponential backoff,
# for as long as _COMMIT_DEADLINE_S: bounded by time, not attempts, because the number of
# losing rounds grows with the number of writers (a backfill's concurrent runs on one table).
_COMMIT_DEADLINE_S = 120.0
_COMMIT_BACKOFF_S = 0.05
_COMMIT_BACKOFF_MAX_S = 2.0
_OPEN_ATTEMPTS = 5
_log = logging.getLogger(__name__)

# Keep per-commit cost flat as history grows: merge manifests on append (bounded manifest list),
# and keep only a bounded number of old metadata.json files.
TABLE_PROPERTIES: dict[str, str] = {
    "write.parquet.compression-codec": PARQUET_CODEC,
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "16",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}
# How many snapshots a table keeps: PyIceberg deep-copies the table metadata (which lists every
# snapshot) many times per commit, so commit latency grows linearly with history. 16 measured
# flat over 300 commits; a downstream reads its upstream's latest materialization, which is
# always among the newest snapshots.
SNAPSHOTS_TO_KEEP_DEFAULT = 16


class LakeTableError(Exception):
    """A table cannot take or give the data asked for (one-line message)."""


@dataclass(frozen=True)
class WriteResult:
    """What a committed materialization recorded: where, which snapshot, how many rows."""

    identifier: str
    snapshot_id: int
    rows: int
    schema: Schema


def open_sql_catalog(name: str, uri: str, warehouse: str, properties: dict[str, str]) -> Catalog:
    """A SqlCatalog (SQLite locally, Postgres in the cluster); creates its tables if absent.

    Runs that open a fresh catalog database at the same moment race in that CREATE TABLE
    (PostgreSQL: duplicate key in pg_type; SQLite: table already exists) and one of them
    failed its write; the loser's next try finds the tables, so the race is retried.
    """
    import sqlalchemy.exc

    for attempt in range(1, _OPEN_ATTEMPTS + 1):
        try:
            return PlannedCommitCatalog(name, uri=uri, warehouse=warehouse, **properties)
        except (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
            sqlalchemy.exc.OperationalError,
        ) as exc:
            lost_race = "already exists" in str(exc) or "duplicate key" in str(exc)
            if not lost_race or attempt == _OPEN_ATTEMPTS:
                raise
            time.sleep(_commit_backoff(attempt))
    raise AssertionError("unreachable")


@contextmanager
def unavailable_as_lake_error(
    catalog: Catalog | None, subject: str, action: str, catalog_uri: str | None = None
) -> Iterator[None]:
    """Turn an unreachable catalog database or object store into ONE line naming the table.

    Without it a user gets psycopg2's multi-line message with the SQL statement, or pyarrow's
    S3 error, with no table in it. Nothing is lost: an Iceberg commit is a single catalog row
    update, so the table holds either the previous snapshot or this whole write, and a retry
    of the step (slo.retry) rewrites the same rows. Only connection-level failures are mapped;
    anything else (a bug, bad data) keeps its own type and traceback.
    """
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        where = _catalog_location(catalog, catalog_uri)
        raise LakeTableError(
            f"{subject}: Iceberg catalog{where} unavailable while {action}: "
            f"{_first_line(exc.orig or exc)}"
        ) from exc
    except OSError as exc:
        warehouse = catalog.properties.get("warehouse") if catalog is not None else None
        where = f" ({warehouse})" if warehouse else ""
        raise LakeTableError(
            f"{subject}: warehouse storage{where} unavailable while {action}: {_first_line(exc)}"
        ) from exc


def _catalog_location(catalog: Catalog | None, catalog_uri: str | None) -> str:
    """` (URL)` of the catalog database, password hidden; empty if unknown."""
    import sqlalchemy.engine

    engine = getattr(catalog, "engine", None)
    if engine is not None:
        url = engine.url
    elif catalog_uri:
        try:
            url = sqlalchemy.engine.make_url(catalog_uri)
        except sqlalchemy.exc.ArgumentError:
            return ""
    else:
        return ""
    return f" ({url.render_as_string(hide_password=True)})"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def normalise_arrow(data: pa.Table) -> pa.Table:
    """Make an Arrow table storable in Iceberg.

    Iceberg timestamps are microseconds and timestamptz is UTC-only; PyIceberg rejects
    timestamp[ns], so ns/ms/s are cast to us (ns truncated) and any tz is converted to UTC.
    """
    fields = list(data.schema)
    if not any(_needs_cast(f.type) for f in fields):
        return data
    columns = []
    new_fields = []
    for field, column in zip(fields, data.columns, strict=True):
        target = _storable_type(field.type)
        if target != field.type:
            column = column.cast(target, safe=False)
        columns.append(column)
        new_fields.append(pa.field(field.name, target, field.nullable, field.metadata))
    return pa.Table.from_arrays(
        columns, schema=pa.schema(new_fields, metadata=data.schema.metadata)
    )


def _needs_cast(t: pa.DataType) -> bool:
    return _storable_type(t) != t


def _storable_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=None if t.tz is None else "UTC")
    if pa.types.is_time64(t) and t.unit == "ns":
        return pa.time64("us")
    if pa.types.is_time32(t):
        return pa.time64("us")
    return t


def with_partition_column(data: pa.Table, partition_key: str) -> pa.Table:
    """Add (or replace) the `partition_key` string column holding the Dagster partition key."""
    column = pa.array([partition_key] * data.num_rows, pa.string())
    if PARTITION_COLUMN in data.column_names:
        return data.set_column(data.column_names.index(PARTITION_COLUMN), PARTITION_COLUMN, column)
    return data.append_column(PARTITION_COLUMN, column)


def write_table(
    catalog: Catalog,
    identifier: tuple[str, str],
    data: pa.Table,
    partition_key: str | None,
    snapshot_properties: dict[str, str] | None = None,
    snapshots_to_keep: int = SNAPSHOTS_TO_KEEP_DEFAULT,
) -> WriteResult:
    """Write `data` as ONE commit: replace the table (unpartitioned) or one partition.

    Creates the namespace and the table on first write (in the same commit as the data),
    evolves the schema by name when new columns appear, and retries on a concurrent commit.
    """
    slices = None if partition_key is None else {partition_key: data}
    return write_partitions(
        catalog, identifier, data, slices, snapshot_properties, snapshots_to_keep
    )


def write_partitions(
    catalog: Catalog,
    identifier: tuple[str, str],
    data: pa.Table | None,
    slices: Mapping[str, pa.Table] | None,
    snapshot_properties: dict[str, str] | None = None,
    snapshots_to_keep: int = SNAPSHOTS_TO_KEEP_DEFAULT,
) -> WriteResult:
    """Replace several partitions (a ranged run's sessions) in ONE commit, or the whole
    table when `slices` is None (then `data` is the table). A reader never sees some
    sessions of a range rewritten and others not."""
    if slices is not None:
        if not slices:
            raise LakeTableError(
                f"{'.'.join(identifier)}: a partitioned write needs at least one partition"
            )
        slices = {key: with_partition_column(part, key) for key, part in slices.items()}
        parts = list(slices.values())
        data = (
            parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")
        )
    assert data is not None
    props = dict(snapshot_properties or {})
    name = ".".join(identifier)
    deadline = time.monotonic() + _COMMIT_DEADLINE_S
    attempt = 0
    with unavailable_as_lake_error(catalog, name, "writing"):
        while True:
            attempt += 1
            try:
                return _write_once(catalog, identifier, data, slices, props, snapshots_to_keep)
            except (CommitFailedException, TableAlreadyExistsError) as exc:
                pause = _commit_backoff(attempt)
                if time.monotonic() + pause > deadline:
                    raise LakeTableError(
                        f"{name}: commit failed after {attempt} attempts in "
                        f"{_COMMIT_DEADLINE_S:.0f} s: "
                        f"other writers kept committing first ({_first_line(exc)})"
                    ) from exc
                _log.info(
                    "%s: another writer committed first; retrying (attempt %d)", name, attempt + 1
                )
                time.sleep(pause)


def _ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """create_namespace_if_not_exists, safe when another writer creates it at the same moment.

    PyIceberg checks, then inserts; the loser of that race gets the database's IntegrityError
    (duplicate key in iceberg_namespace_properties), not NamespaceAlreadyExistsError, and its
    write failed. The namespace exists then, which is all a write needs.
    """
    import sqlalchemy.exc

    try:
        catalog.create_namespace_if_not_exists(namespace)
    except sqlalchemy.exc.IntegrityError:
        catalog.load_namespace_properties(
            namespace
        )  # raises NoSuchNamespaceError if it is not there


def _commit_backoff(attempt: int) -> float:
    """Full jitter (uniform in [0, cap]): writers that collided do not collide again in lockstep."""
    return random.uniform(
        0.0, min(_COMMIT_BACKOFF_MAX_S, _COMMIT_BACKOFF_S * 2 ** min(attempt, 16))
    )


def _write_once(
    catalog: Catalog,
    identifier: tuple[str, str],
    data: pa.Table,
    slices: Mapping[str, pa.Table] | None,
    props: dict[str, str],
    snapshots_to_keep: int,
) -> WriteResult:
    txn = _open_transaction(catalog, identifier, data.schema, partitioned=slices is not None)
    table = _commit_write(txn, identifier, data, slices, props, snapshots_to_keep)
    snapshot = table.current_snapshot()
    assert snapshot is not None, "a committed write always has a snapshot"
    return WriteResult(".".join(identifier), snapshot.snapshot_id, data.num_rows, table.schema())


def rewrite_exactly(
    table: Table,
    identifier: tuple[str, str],
    data: pa.Table,
    partition_keys: Sequence[str] | None,
    props: dict[str, str],
) -> int:
    """Replace the whole table (`partition_keys` None) or those partitions with `data` (rows as
    read from this table, partition column included; no rows: delete them) in ONE commit on
    exactly the state `table` was loaded at. No retry: lake maintenance rewrites what it read,
    so a concurrent writer's commit must make this one fail (CommitFailedException), not be
    overwritten with older rows. Returns the new snapshot id."""
    txn = _MetadataOnceTransaction(_without_pyiceberg_retries(table))
    slices: dict[str, pa.Table] | None = None
    if partition_keys is not None:
        column = data.column(PARTITION_COLUMN)
        slices = {key: data.filter(pc.equal(column, key)) for key in partition_keys}
    committed = _commit_write(txn, identifier, data, slices, props, None)
    snapshot = committed.current_snapshot()
    assert snapshot is not None, "a committed write always has a snapshot"
    return snapshot.snapshot_id


def empty_rows(table: Table) -> pa.Table:
    """No rows, with the table's columns: what `rewrite_exactly` writes to delete."""
    return schema_to_pyarrow(table.schema(), include_field_ids=False).empty_table()


def _commit_write(
    txn: Transaction,
    identifier: tuple[str, str],
    data: pa.Table,
    slices: Mapping[str, pa.Table] | None,
    props: dict[str, str],
    snapshots_to_keep: int | None,
) -> Table:
    """Stage and commit one write on `txn`: schema evolution, the data files, the snapshot
    (merge-append, or a replace of the rewritten files), the commit-time expiry (None: none),
    shared by the IO manager's writes and lake maintenance's rewrites."""
    # Every `txn.table_metadata` access deep-copies the metadata: read it as rarely as possible.
    metadata = txn.table_metadata
    partitioned = not metadata.spec().is_unpartitioned()
    if partitioned != (slices is not None):
        kind = "partitioned" if partitioned else "unpartitioned"
        raise LakeTableError(
            f"{'.'.join(identifier)} is {kind} in Iceberg but this materialization is "
            f"{'not ' if slices is None else ''}partitioned"
        )
    if _has_new_columns(metadata.schema(), data.schema):
        with txn.update_schema() as update:
            update.union_by_name(data.schema)
        metadata = txn.table_metadata
    schema = metadata.schema()
    _check_pyarrow_schema_compatible(schema, data.schema, format_version=metadata.format_version)

    keys = None if slices is None else list(slices)
    io = txn._table.io
    if slices is None:
        new_files = _write_data_files(io, metadata, data, None)
    else:
        new_files = [
            f for key, part in slices.items() for f in _write_data_files(io, metadata, part, key)
        ]
    try:
        parent = _read_parent(io, metadata, keys)
        producer: _ReplaceFiles | _MergeAppendFiles
        if parent.replaced:
            producer = _ReplaceFiles(txn, props, parent)
        else:
            producer = txn.update_snapshot(snapshot_properties=props).merge_append()
        with producer:
            for data_file in new_files:
                producer.append_data_file(data_file)
        if snapshots_to_keep is not None:
            _expire_old_snapshots(txn, metadata, keep=snapshots_to_keep)
        table = txn.commit_transaction()
    except (CommitFailedException, TableAlreadyExistsError, LakeTableError, ValueError):
        # Refused for certain (another writer won, or planning failed before the commit): no
        # snapshot names this attempt's files, so they go now rather than pile up as orphans
        # (a retried attempt writes its own). Not on other errors: a connection lost during
        # the commit may have committed it.
        _delete_quietly(io, [f.file_path for f in new_files])
        raise
    return table


@dataclass(frozen=True)
class _Parent:
    """The current snapshot's manifests as one write needs them, each file read ONCE.

    `manifests`: those still holding live files (a manifest of only DELETED entries, what an
    earlier overwrite removed, is left out of the new snapshot: see _ReplaceFiles).
    `entries`: the live entries of the data manifests that may hold a replaced file (pruned by
    their partition summaries), by manifest path. `replaced`: the entries of the data files
    this write replaces (all of them, or those of its partitions).
    """

    manifests: list[ManifestFile]
    entries: dict[str, list[ManifestEntry]]
    replaced: list[ManifestEntry]


def _read_parent(io: FileIO, metadata: TableMetadata, partition_keys: list[str] | None) -> _Parent:
    """Read the manifest list and the matching manifests once for the whole write.

    PyIceberg's overwrite reads them three times per commit (our scan for the files to
    replace, then its deleted-entries and existing-manifests passes), each time parsing every
    Avro file again (schema conversion included, ~2-3 ms a file): that was the largest part of
    a small commit once the metadata copies were gone.
    """
    snapshot = metadata.current_snapshot()
    if snapshot is None:
        return _Parent([], {}, [])
    manifests, entries, matched = _live_entries(io, metadata, snapshot, partition_keys)
    return _Parent(manifests, entries, matched)


def snapshot_data_files(
    io: FileIO, metadata: TableMetadata, snapshot: Snapshot, partition_keys: Sequence[str] | None
) -> list[DataFile] | None:
    """The data files a read of `snapshot` (those of `partition_keys`; None: all) opens, in
    one single-threaded pass over its manifests; None where a delete file applies, so the
    rows are not simply the files' rows.

    What PyIceberg's `scan().plan_files()` returns for a partition filter, without its thread
    pool: on a small table the hand-offs were most of a SQL node's input planning (~18 ms an
    input against ~4 ms here)."""
    manifests, _, matched = _live_entries(io, metadata, snapshot, partition_keys)
    if any(m.content != ManifestContent.DATA for m in manifests):
        return None
    return [e.data_file for e in matched]


def _live_entries(
    io: FileIO,
    metadata: TableMetadata,
    snapshot: Snapshot,
    partition_keys: Sequence[str] | None,
) -> tuple[list[ManifestFile], dict[str, list[ManifestEntry]], list[ManifestEntry]]:
    """A snapshot's manifests still holding live files, the live entries of the data
    manifests that may hold `partition_keys` (by manifest path), and the entries of exactly
    those partitions (None: every entry). Pruning is PyIceberg's own: the partition filter's
    inclusive projection against the manifest summaries, then against each entry's partition.
    """
    manifests = [m for m in snapshot.manifests(io) if m.has_added_files() or m.has_existing_files()]
    schema = metadata.schema()
    row_filter = partition_filter(partition_keys)
    entries: dict[str, list[ManifestEntry]] = {}
    matched: list[ManifestEntry] = []
    for manifest in manifests:
        if manifest.content != ManifestContent.DATA:
            continue  # delete files are carried as they are (we never write them)
        spec = metadata.specs()[manifest.partition_spec_id]
        projected = inclusive_projection(schema, spec)(row_filter)
        if not manifest_evaluator(spec, schema, projected, True)(manifest):
            continue
        matches = expression_evaluator(Schema(*spec.partition_type(schema).fields), projected, True)
        live = manifest.fetch_manifest_entry(io, discard_deleted=True)
        entries[manifest.manifest_path] = live
        matched.extend(e for e in live if matches(e.data_file.partition))
    return manifests, entries, matched


class _ReplaceFiles(_OverwriteFiles):
    """PyIceberg's overwrite, planned from the manifests `_read_parent` already read.

    Same snapshot as `txn.update_snapshot().overwrite()` with `delete_data_file` per replaced
    file: the replaced files' entries as DELETED in a manifest of their own, untouched
    manifests carried, a manifest holding both replaced and kept files rewritten with the kept
    ones as EXISTING. One difference on purpose: manifests holding only DELETED entries (what
    an earlier overwrite removed) are not carried. PyIceberg carries them forever (its fast
    append drops them, Java Iceberg does too), so each replace of a table added one that
    every later write and read opened: seen at 1,000 runs, a 10-node run took 47 s instead of
    10. A deletion is recorded in the snapshot that made it; later ones need not carry it.
    """

    def __init__(self, txn: Transaction, props: dict[str, str], parent: _Parent) -> None:
        super().__init__(
            operation=Operation.OVERWRITE,
            transaction=txn,
            io=txn._table.io,
            snapshot_properties=props,
        )
        self._parent = parent
        for entry in parent.replaced:
            self.delete_data_file(entry.data_file)

    def _deleted_entries(self) -> list[ManifestEntry]:
        return [
            ManifestEntry.from_args(
                status=ManifestEntryStatus.DELETED,
                snapshot_id=self._snapshot_id,
                sequence_number=entry.sequence_number,
                file_sequence_number=entry.file_sequence_number,
                data_file=entry.data_file,
            )
            for entry in self._parent.replaced
        ]

    def _existing_manifests(self) -> list[ManifestFile]:
        kept: list[ManifestFile] = []
        for manifest in self._parent.manifests:
            entries = self._parent.entries.get(manifest.manifest_path)
            if entries is None or not any(e.data_file in self._deleted_data_files for e in entries):
                kept.append(manifest)
                continue
            remaining = [e for e in entries if e.data_file not in self._deleted_data_files]
            if not remaining:
                continue
            with self.new_manifest_writer(self.spec(manifest.partition_spec_id)) as writer:
                for entry in remaining:
                    writer.add_entry(
                        ManifestEntry.from_args(
                            status=ManifestEntryStatus.EXISTING,
                            snapshot_id=entry.snapshot_id,
                            sequence_number=entry.sequence_number,
                            file_sequence_number=entry.file_sequence_number,
                            data_file=entry.data_file,
                        )
                    )
            kept.append(writer.to_manifest_file())
        return kept


def _delete_quietly(io: FileIO, paths: list[str]) -> None:
    for path in paths:
        try:
            io.delete(path)
        except Exception as exc:  # noqa: BLE001 - best effort: a leftover file is harmless, a masked conflict is not
            _log.warning("could not delete uncommitted data file %s: %s", path, _first_line(exc))


def _expire_old_snapshots(txn: Transaction, metadata: TableMetadata, keep: int) -> None:
    """Expire old snapshots so `keep` remain, counting the one this transaction adds.

    Table metadata (and the deep copy PyIceberg makes of it several times per commit) grows
    with every snapshot; bounding the history keeps a commit's cost flat. Data files are not
    deleted, so an expired snapshot's data is still on storage until an orphan-file cleanup.
    """
    # A tagged snapshot is pinned (lake maintenance's pins, a ref of a running backtest, a
    # promoted model's training data): it is kept, and not counted against `keep`.
    protected = {ref.snapshot_id for name, ref in metadata.refs.items() if name != MAIN_BRANCH}
    snapshots = sorted(
        (s for s in metadata.snapshots if s.snapshot_id not in protected),
        key=lambda s: s.sequence_number or 0,
    )
    # `metadata` predates the snapshot being committed, so keep-1 of the old ones survive.
    expired = [s.snapshot_id for s in snapshots[: max(0, len(snapshots) - (keep - 1))]]
    if expired:
        ExpireSnapshots(txn).by_ids(expired).commit()


def _open_transaction(
    catalog: Catalog, identifier: tuple[str, str], arrow_schema: pa.Schema, partitioned: bool
) -> Transaction:
    """The table's transaction, or a create-table transaction so creation and data are one
    commit."""
    try:
        return _MetadataOnceTransaction(_without_pyiceberg_retries(catalog.load_table(identifier)))
    except NoSuchTableError:
        # Only a table's first write needs its namespace: a loaded table proves it exists, and
        # checking it on every write cost two catalog queries per commit.
        _ensure_namespace(catalog, identifier[0])
    schema = Catalog._convert_schema_if_needed(arrow_schema)
    spec = UNPARTITIONED_PARTITION_SPEC
    if partitioned:
        source = schema.find_field(PARTITION_COLUMN)
        spec = PartitionSpec(
            PartitionField(
                source_id=source.field_id,
                field_id=1000,
                transform=IdentityTransform(),
                name=PARTITION_COLUMN,
            )
        )
    return catalog.create_table_transaction(
        identifier, schema=schema, partition_spec=spec, properties=TABLE_PROPERTIES
    )


class _MetadataOnceTransaction(Transaction):
    """A Transaction whose `table_metadata` is computed once per staged state, not per access.

    PyIceberg's property re-applies the staged updates and deep-copies the whole metadata (every
    retained snapshot, the metadata log) on EACH access, and a snapshot producer reads it about
    30 times per commit (spec(), schema(), properties...): measured ~30% of a small commit. The
    metadata models are immutable (pydantic, frozen; updates build new objects), so handing the
    same copy out until the staged updates or the base metadata change returns the same values.
    """

    _memo: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        memo = self._memo
        # By identity: staging builds a new tuple, a refresh a new metadata object.
        if memo is None or memo[0] is not base or memo[1] is not updates:
            memo = (base, updates, update_table_metadata(base, updates))
            self._memo = memo
        return memo[2]


def _without_pyiceberg_retries(table: Table) -> Table:
    """This handle with PyIceberg's own commit retry off (in memory; stored properties unchanged).

    On a conflict PyIceberg rebuilds only the snapshot and re-plays the transaction's other
    updates on the new table state as they were: our snapshot expiry, computed for the old
    state, then names snapshots another writer has expired meanwhile, and the commit fails with
    a ValueError that no retry catches (4 concurrent writers lost writes this way).
    write_partitions retries the whole write from a fresh load instead, so the replaced files,
    the schema update and the expiry are all planned against the state being committed on.
    """
    properties = {**table.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    metadata = table.metadata.model_copy(update={"properties": properties})
    return _PlannedTable(table, metadata)


class _PlannedTable(Table):
    """A table handle one write is planned on: `stored` is its metadata as the catalog held it
    when loaded (the handle's own has PyIceberg's retries off, which must not be committed)."""

    def __init__(self, loaded: Table, metadata: TableMetadata) -> None:
        super().__init__(
            loaded.name(),
            metadata,
            loaded.metadata_location,
            loaded.io,
            loaded.catalog,
            loaded.config,
        )
        self.stored = loaded.metadata


class PlannedCommitCatalog(SqlCatalog):
    """A SqlCatalog whose commit of a planned write checks it against the state it was planned
    on, instead of loading the table a second time (a catalog query and a metadata file read
    and parse, ~4 ms of each small write).

    Nothing is weakened: the catalog row is still updated only WHERE its metadata location is
    the one the write was planned on, so a writer that committed in between makes this commit
    fail (CommitFailedException) and write_partitions plans it again from a fresh load. The
    new metadata file such a failed attempt wrote is named by nothing; orphan removal deletes
    it after its grace period, as it does a failed writer's data files.
    """

    _planned = threading.local()

    def commit_table(
        self, table: Table, requirements: tuple[Any, ...], updates: tuple[TableUpdate, ...]
    ) -> Any:
        if not isinstance(table, _PlannedTable):
            return super().commit_table(table, requirements, updates)
        self._planned.table = Table(
            table.name(), table.stored, table.metadata_location, table.io, self, table.config
        )
        try:
            return super().commit_table(table, requirements, updates)
        finally:
            self._planned.table = None

    def load_table(self, identifier: str | tuple[str, ...]) -> Table:
        planned: Table | None = getattr(self._planned, "table", None)
        if planned is not None and Catalog.identifier_to_tuple(identifier) == planned.name():
            self._planned.table = None  # the one load commit_table makes
            return planned
        return super().load_table(identifier)


def _has_new_columns(schema: Schema, arrow_schema: pa.Schema) -> bool:
    existing = {f.name for f in schema.fields}
    return any(name not in existing for name in arrow_schema.names)


def _is_flat(schema: Schema) -> bool:
    return all(f.field_type.is_primitive for f in schema.fields)


def _write_data_files(
    io: FileIO, metadata: TableMetadata, data: pa.Table, partition_key: str | None
) -> list[DataFile]:
    """Write `data` as Parquet with pyarrow directly (same codec as a plain `pq.write_table`).

    Large tables are cut into contiguous slices of >= ROWS_PER_FILE rows written in parallel
    (Parquet encoding is single-threaded per file and releases the GIL). Nested schemas go
    through PyIceberg's writer, which assigns nested field ids.
    """
    schema = metadata.schema()
    if data.num_rows == 0:
        return []
    if not _is_flat(schema):
        return list(_dataframe_to_data_files(table_metadata=metadata, df=data, io=io))
    file_table = _with_field_ids(data, schema)
    directory = f"{metadata.location.rstrip('/')}/data"
    partition = Record()
    if partition_key is not None:
        directory = f"{directory}/{PARTITION_COLUMN}={quote(partition_key, safe='')}"
        partition = Record(partition_key)
    write_id = uuid.uuid4()
    pieces = max(1, min(os.cpu_count() or 1, data.num_rows // ROWS_PER_FILE))
    step = -(-data.num_rows // pieces)
    slices = [file_table.slice(i * step, step) for i in range(pieces)]
    stats_plan = compute_statistics_plan(schema, metadata.properties)
    column_ids = parquet_path_to_id_mapping(schema)

    def write(index: int) -> DataFile:
        # Names sort in write order, so a reader sorting by path gets the rows back in order.
        path = f"{directory}/{write_id}-{index:05d}.parquet"
        output = io.new_output(path)
        collector: list[pq.FileMetaData] = []
        with output.create(overwrite=True) as stream:
            pq.write_table(
                slices[index], stream, compression=PARQUET_CODEC, metadata_collector=collector
            )
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=collector[0],
            stats_columns=stats_plan,
            parquet_column_mapping=column_ids,
        )
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=partition,
            file_size_in_bytes=len(output.to_input_file()),
            sort_order_id=None,
            spec_id=metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )

    if pieces == 1:
        return [write(0)]
    with ThreadPoolExecutor(max_workers=pieces) as pool:
        return list(pool.map(write, range(pieces)))


def _with_field_ids(data: pa.Table, schema: Schema) -> pa.Table:
    """Same columns (zero-copy), with Iceberg field ids in the Parquet schema."""
    fields = []
    for field in data.schema:
        field_id = schema.find_field(field.name).field_id
        meta = dict(field.metadata or {})
        meta[_FIELD_ID_KEY] = str(field_id).encode()
        fields.append(pa.field(field.name, field.type, field.nullable, meta))
    return pa.Table.from_arrays(data.columns, schema=pa.schema(fields))


def partition_filter(keys: str | Sequence[str] | None) -> BooleanExpression:
    if keys is None:
        return AlwaysTrue()
    # Keyword form: mypy types these pydantic models by their fields, not pyiceberg's __init__.
    if isinstance(keys, str):
        return EqualTo(term=Reference(PARTITION_COLUMN), value=literal(keys))
    if len(keys) == 1:
        return EqualTo(term=Reference(PARTITION_COLUMN), value=literal(keys[0]))
    return In(term=Reference(PARTITION_COLUMN), values={literal(k) for k in keys})


def read_table(catalog: Catalog, identifier: tuple[str, str], snapshot_id: int | None) -> pa.Table:
    """Read exactly one snapshot (None: the current one) of a whole table."""
    with unavailable_as_lake_error(catalog, ".".join(identifier), "reading"):
        table = catalog.load_table(identifier)
        if snapshot_id is not None and table.snapshot_by_id(snapshot_id) is None:
            raise LakeTableError(
                f"{'.'.join(identifier)}: snapshot {snapshot_id} no longer exists (expired)"
            )
        return scan_rows(table, snapshot_id, None)


def read_partitions(
    catalog: Catalog,
    identifier: tuple[str, str],
    partition_keys: Sequence[str],
    snapshot_ids: Sequence[int],
) -> pa.Table:
    """Read some partition keys at the newest of the snapshots their materializations recorded.

    A partition write only touches its own key, so at the newest recorded snapshot every asked-for
    key holds what its latest materialization wrote. Snapshot ids are random, so "newest" is by
    sequence number; if any of them was expired, the current snapshot holds the same content.
    """
    with unavailable_as_lake_error(catalog, ".".join(identifier), "reading"):
        table = catalog.load_table(identifier)
        snapshot_id, keys = partitions_read(table, partition_keys, snapshot_ids)
        return scan_rows(table, snapshot_id, keys)


def partitions_read(
    table: Table, partition_keys: Sequence[str], snapshot_ids: Sequence[int]
) -> tuple[int | None, Sequence[str] | None]:
    """(snapshot, keys to filter on) that read those partitions as recorded (see
    read_partitions)."""
    retained = [s for s in map(table.snapshot_by_id, snapshot_ids) if s is not None]
    # One of them expired: an older retained one may predate a partition's latest write (a
    # pinned snapshot outlives newer unpinned ones), so read the current snapshot, which holds
    # every partition as its latest write left it.
    if len(retained) < len(snapshot_ids):
        retained = []
    newest = max(retained, key=lambda s: s.sequence_number or 0) if retained else None
    keys = None if table.spec().is_unpartitioned() else partition_keys
    return (newest.snapshot_id if newest else None), keys


def scan_rows(
    table: Table, snapshot_id: int | None, partition_keys: Sequence[str] | None
) -> pa.Table:
    """Flat tables: each planned file with `pq.read_table`, columns mapped by field id (renames
    and added columns handled). Delete files or nested types: PyIceberg's own scan."""
    scan = table.scan(snapshot_id=snapshot_id, row_filter=partition_filter(partition_keys))
    schema = scan.projection()
    tasks = list(scan.plan_files())
    if not _is_flat(schema) or any(task.delete_files for task in tasks):
        return scan.to_arrow()
    target = schema_to_pyarrow(schema, include_field_ids=False)
    if not tasks:
        return target.empty_table()
    tasks.sort(key=lambda task: task.file.file_path)
    pieces = [_read_file(table, task.file.file_path, schema, target) for task in tasks]
    if len(pieces) == 1:
        return pieces[0]
    try:
        return pa.concat_tables(pieces, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return scan.to_arrow()


def _read_file(table: Table, path: str, schema: Schema, target: pa.Schema) -> pa.Table:
    """One data file, columns renamed to the snapshot schema by field id; missing ones as nulls."""
    with table.io.new_input(path).open() as stream:
        raw = pq.read_table(stream)
    by_id: dict[int, int] = {}
    for i, field in enumerate(raw.schema):
        if field.metadata and _FIELD_ID_KEY in field.metadata:
            by_id[int(field.metadata[_FIELD_ID_KEY])] = i
    mapping = table.metadata.schema().name_mapping if not by_id else None
    columns: list[pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for iceberg_field, arrow_field in zip(schema.fields, target, strict=True):
        index = (
            by_id.get(iceberg_field.field_id)
            if mapping is None
            else _index_by_name(raw, iceberg_field)
        )
        if index is None:
            column = pa.chunked_array([pa.nulls(raw.num_rows, arrow_field.type)])
            fields.append(arrow_field)
        else:
            column = raw.column(index)
            fields.append(pa.field(iceberg_field.name, column.type, not iceberg_field.required))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _index_by_name(raw: pa.Table, field: NestedField) -> int | None:
    return raw.column_names.index(field.name) if field.name in raw.column_names else None


__all__ = [
    "PARTITION_COLUMN",
    "SNAPSHOTS_TO_KEEP_DEFAULT",
    "TABLE_PROPERTIES",
    "LakeTableError",
    "WriteResult",
    "normalise_arrow",
    "open_sql_catalog",
    "read_partitions",
    "read_table",
    "unavailable_as_lake_error",
    "with_partition_column",
    "write_partitions",
    "write_table",
]
