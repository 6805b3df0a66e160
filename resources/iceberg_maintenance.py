"""What lake maintenance does to one Iceberg table: pin, expire, compact, remove orphans.

Hand-written because PyIceberg 0.12 has only `expire_snapshots` (which neither deletes the
files it frees nor lists what it skipped); data-file compaction (`rewrite_data_files`) and
orphan removal exist in Java/Spark and as Trino's `ALTER TABLE ... EXECUTE` procedures, none
of which runs in a step here (docs/decisions.md).

Pins are Iceberg tags, so the table itself says what must outlive expiry: every expiry in
Iceberg (ours at commit time and here, Spark's, Trino's `expire_snapshots`) keeps a tagged
snapshot. Tags this platform owns start with PIN_PREFIX; others' are left alone and still
protect their snapshots.

Each function works on one loaded table and commits at most once, on exactly the state it
read: a concurrent writer makes the commit fail (CommitFailedException) and the caller skips
the table until the next pass; nothing a writer committed is ever replaced by older rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlparse

from pyarrow import fs as pafs
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from resources.iceberg_tables import empty_rows, rewrite_exactly, scan_rows

PIN_PREFIX = "quantos-pin/"
RUN_PIN = f"{PIN_PREFIX}run/"
RELEASE_PIN = f"{PIN_PREFIX}release/"
_log = logging.getLogger(__name__)


class MaintenanceError(RuntimeError):
    """A table maintenance cannot handle (one line)."""


@dataclass(frozen=True)
class Freed:
    """Files removed from storage and their bytes (data files' sizes; metadata files' too
    where the listing gave them)."""

    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Compacted:
    """One partition (None: the unpartitioned table) rewritten from `files_before` files."""

    partition: str | None
    files_before: int
    files_after: int
    rows: int
    snapshot_id: int


def run_pin(run_id: str) -> str:
    """The tag of a run's refs (written by its steps, dropped once the run finished)."""
    return f"{RUN_PIN}{run_id}"


def release_pin(pipeline_id: str, stage: str) -> str:
    """The tag of a stage's model's training data (moved by the stage's next promotion)."""
    return f"{RELEASE_PIN}{pipeline_id}/{stage}"


def protected_snapshots(table: Table) -> set[int]:
    """What no expiry removes: the current snapshot and every tagged or branch head."""
    current = table.metadata.current_snapshot_id
    refs = {ref.snapshot_id for ref in table.metadata.refs.values()}
    return refs | ({current} if current is not None else set())


def pin_tags(table: Table) -> dict[str, int]:
    """The platform's pins on this table: tag name -> snapshot id."""
    return {
        name: ref.snapshot_id
        for name, ref in table.metadata.refs.items()
        if name.startswith(PIN_PREFIX)
    }


def set_pins(table: Table, add: Mapping[str, int], remove: Iterable[str]) -> None:
    """Create or move the tags in `add` and drop those in `remove`, in one commit."""
    current = pin_tags(table)
    add = {name: sid for name, sid in add.items() if current.get(name) != sid}
    remove = [name for name in remove if name in current and name not in add]
    if not add and not remove:
        return
    with table.manage_snapshots() as manage:
        for name in remove:
            manage.remove_tag(name)
        for name, snapshot_id in add.items():
            manage.create_tag(snapshot_id, name)


def expire(
    table: Table, snapshot_ids: Iterable[int], dry_run: bool = False
) -> tuple[list[int], Freed]:
    """Expire those snapshots that are not protected, then delete the files that only they
    referenced (what Iceberg's own expiry does; PyIceberg's leaves them on storage).
    `dry_run`: what would go, changing nothing."""
    protected = protected_snapshots(table)
    ids = sorted(
        {i for i in snapshot_ids if i not in protected and table.snapshot_by_id(i) is not None}
    )
    if not ids:
        return [], Freed()
    io = table.io
    before = _reachable(io, table.metadata.snapshots)
    if dry_run:
        kept = _reachable(io, [s for s in table.metadata.snapshots if s.snapshot_id not in ids])
        gone = _inside(table, {p: n for p, n in before.items() if p not in kept})
        return ids, Freed(len(gone), sum(gone.values()))
    table.maintenance.expire_snapshots().by_ids(ids).commit()
    # The commit applied our removal to the catalog's latest metadata (another writer's new
    # snapshots included), so what that still reaches is kept.
    after = _reachable(io, table.metadata.snapshots)
    gone = {path: size for path, size in before.items() if path not in after}
    return ids, _delete(io, _inside(table, gone))


def compact(
    table: Table,
    identifier: tuple[str, str],
    min_files: int,
    small_bytes: int,
    dry_run: bool = False,
) -> list[Compacted]:
    """Rewrite each partition (or the unpartitioned table) holding `min_files` or more data
    files, all smaller than `small_bytes`, as one file: session appends that arrived in
    pieces. One commit for all of them; the rows read the same before and after. Partitions
    with delete files are left alone (their rows are not simply their files' rows).
    `dry_run`: what would be rewritten (snapshot_id 0), changing nothing."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    groups: dict[str | None, list[DataFile]] = {}
    with_deletes: set[str | None] = set()
    partitioned = not table.spec().is_unpartitioned()
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            key = str(entry.data_file.partition[0]) if partitioned else None
            if manifest.content == ManifestContent.DELETES:
                with_deletes.add(key)
            else:
                groups.setdefault(key, []).append(entry.data_file)
    chosen = {
        key: files
        for key, files in groups.items()
        if key not in with_deletes
        and len(files) >= min_files
        and all(f.file_size_in_bytes < small_bytes for f in files)
    }
    if not chosen:
        return []
    snapshot_id = 0
    if not dry_run:
        keys = [k for k in chosen if k is not None]
        data = scan_rows(table, snapshot.snapshot_id, keys if partitioned else None)
        snapshot_id = rewrite_exactly(
            table,
            identifier,
            data,
            keys if partitioned else None,
            {"quantos.maintenance": "compact"},
        )
    return [
        Compacted(key, len(files), 1, sum(f.record_count for f in files), snapshot_id)
        for key, files in sorted(chosen.items(), key=lambda kv: kv[0] or "")
    ]


def delete_rows(table: Table, identifier: tuple[str, str], partition_keys: list[str] | None) -> int:
    """Delete those partitions (None: every row) in one commit; the new snapshot id."""
    return rewrite_exactly(
        table, identifier, empty_rows(table), partition_keys, {"quantos.maintenance": "ttl"}
    )


def remove_orphans(
    table: Table, older_than: datetime, dry_run: bool = False
) -> tuple[list[str], Freed]:
    """Delete files under the table's location that no retained snapshot and no metadata file
    names, last modified before `older_than` (a writer's files are unnamed until its commit
    lands: the grace period keeps them). `dry_run`: what would be deleted."""
    io = table.io
    if not isinstance(io, PyArrowFileIO):
        raise MaintenanceError(
            f"{'.'.join(table.name())}: orphan removal lists storage through PyArrowFileIO, "
            f"the table uses {type(io).__name__}"
        )
    named = set(_reachable(io, table.metadata.snapshots))
    named.add(table.metadata_location)
    named.update(entry.metadata_file for entry in table.metadata.metadata_log)
    named.update(s.statistics_path for s in table.metadata.statistics)
    named.update(s.statistics_path for s in table.metadata.partition_statistics)
    known = {_key(p) for p in named}
    cutoff = older_than.timestamp()
    orphans: dict[str, int] = {}
    for path, size, mtime in _listing(io, table.metadata.location):
        if _key(path) not in known and mtime < cutoff:
            orphans[path] = size
    mine = _inside(table, orphans)
    if dry_run:
        return sorted(mine), Freed(len(mine), sum(mine.values()))
    return sorted(mine), _delete(io, mine)


def check_location(table: Table, expected: str) -> None:
    """MaintenanceError unless the table lives in its own folder, `expected`: what is not
    named by a table whose location is, say, the warehouse root is every other table's data,
    and orphan removal there would delete the lake."""
    if _key(table.metadata.location).rstrip("/") != _key(expected).rstrip("/"):
        raise MaintenanceError(
            f"{'.'.join(table.name())}: location {table.metadata.location} is not its own "
            f"folder {expected}: files are not removed there"
        )


def _inside(table: Table, files: Mapping[str, int]) -> dict[str, int]:
    """Only files under the table's own location: a snapshot may name another table's files
    (Iceberg allows adding any file), and those are never this table's to delete."""
    root = _key(table.metadata.location).rstrip("/") + "/"
    return {path: size for path, size in files.items() if _key(path).startswith(root)}


def _reachable(io: FileIO, snapshots: Iterable[Snapshot]) -> dict[str, int]:
    """Every file the snapshots read (manifest lists, manifests, their live data and delete
    files), with its size where the metadata records it. Manifests shared between snapshots are
    read once."""
    files: dict[str, int] = {}
    for snapshot in snapshots:
        files.setdefault(snapshot.manifest_list, 0)
        for manifest in snapshot.manifests(io):
            if manifest.manifest_path in files:
                continue
            files[manifest.manifest_path] = manifest.manifest_length
            # A DELETED entry names a file its snapshot no longer has: not a reason to keep it.
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                files[entry.data_file.file_path] = entry.data_file.file_size_in_bytes
    return files


def _key(path: str) -> str:
    """A path as storage lists it: file:///x -> /x, s3://bucket/key -> bucket/key."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return parsed.path or path
    return f"{parsed.netloc}{parsed.path}"


def _listing(io: PyArrowFileIO, location: str) -> Iterator[tuple[str, int, float]]:
    """(path as the table names it, size, mtime) of every file under `location`."""
    scheme, netloc, root = PyArrowFileIO.parse_location(location)
    filesystem = io.fs_by_scheme(scheme, netloc)
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    prefix = "file://" if scheme == "file" else f"{scheme}://"
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        mtime = info.mtime.timestamp() if info.mtime is not None else float("inf")
        yield f"{prefix}{info.path}", info.size or 0, mtime


def _delete(io: FileIO, files: Mapping[str, int]) -> Freed:
    done, freed = 0, 0
    for path, size in files.items():
        try:
            io.delete(path)
        except FileNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 - one stuck file must not stop the pass
            _log.warning("could not delete %s: %s", path, str(exc).splitlines()[0:1])
            continue
        done, freed = done + 1, freed + size
    return Freed(done, freed)
