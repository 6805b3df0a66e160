"""The platform's local stand-ins for objects specs name in other buckets, put into the local
artifact store.

A spec from the compiler names objects the firm keeps in its own buckets (the seed's
`sql_uri: s3://queries/bt_fetch.sql`). The embedded default has no such bucket, so the
repository carries a stand-in per object, `deploy/local_objects/<bucket>/<key>`, and the local
profile copies them to `<artifact store>/buckets/<bucket>/<key>` whenever it binds its
resources (`build_resources`: `make run`, `quantos run`, every run, every test's data dir).
The store then serves `s3://<bucket>/<key>` of exactly those buckets from there
(`ArtifactStore.local_buckets`).

The folder is the platform's, not any team's: it is synced to the repository each time
(a changed copy is put back, a file the repository does not have is removed) and its files
are read-only. No node output can land in it (the IO manager writes under models/, reports/,
files/, pipes/ only). Copying is idempotent and cheap: unchanged files are compared, not
rewritten.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from resources.artifact_store import LOCAL_BUCKETS_DIR
from resources.atomic_file import write_atomically

SOURCE = Path(__file__).resolve().parent.parent / "deploy" / "local_objects"
# S3's bucket naming rules (lower case, digits, dots, hyphens; 3-63 characters), no `..`.
_BUCKET = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_READ_ONLY = 0o444


class LocalObjectsError(ValueError):
    """deploy/local_objects holds something that is not a stand-in object: one line naming it."""


@dataclass(frozen=True)
class LocalObjects:
    """What a sync left in the store: the buckets served and how many files it (re)wrote."""

    buckets: tuple[str, ...]
    written: int
    removed: int


def stand_ins(source: Path = SOURCE) -> dict[str, bytes]:
    """`<bucket>/<key>` -> bytes of every stand-in object under `source`. Top-level files (a
    README) and dot-files are not objects; a symlink or a folder not named like a bucket is an
    error, so nothing outside the folder is ever copied into the store."""
    objects: dict[str, bytes] = {}
    if not source.is_dir():
        return objects
    for bucket_dir in sorted(source.iterdir()):
        if bucket_dir.name.startswith(".") or (
            bucket_dir.is_file() and not bucket_dir.is_symlink()
        ):
            continue
        if bucket_dir.is_symlink() or not bucket_dir.is_dir():
            raise LocalObjectsError(
                f"{bucket_dir}: a symlink or special file; a bucket is a folder"
            )
        if not _BUCKET.match(bucket_dir.name):
            raise LocalObjectsError(f"{bucket_dir}: '{bucket_dir.name}' is not an S3 bucket name")
        for dirpath, dirnames, filenames in os.walk(bucket_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith("."):
                    continue
                if path.is_symlink() or not path.is_file():
                    raise LocalObjectsError(
                        f"{path}: a symlink or special file; a stand-in object is a plain file"
                    )
                objects[path.relative_to(source).as_posix()] = path.read_bytes()
            for name in dirnames:
                if (Path(dirpath) / name).is_symlink():
                    raise LocalObjectsError(
                        f"{Path(dirpath) / name}: a symlink; stand-in objects are plain files"
                    )
    return objects


def sync_local_objects(store_folder: Path, source: Path = SOURCE) -> LocalObjects:
    """Make `<store_folder>/buckets/` hold exactly the stand-ins of `source`, read-only."""
    objects = stand_ins(source)
    target_root = store_folder / LOCAL_BUCKETS_DIR
    written = 0
    for relpath, data in objects.items():
        target = target_root / relpath
        if target.is_symlink() or not _holds(target, data):
            if target.is_symlink():
                target.unlink()
            write_atomically(target, data)
            written += 1
        if target.stat().st_mode & 0o777 != _READ_ONLY:
            target.chmod(_READ_ONLY)
    removed = _remove_others(target_root, set(objects))
    buckets = tuple(sorted({relpath.split("/", 1)[0] for relpath in objects}))
    return LocalObjects(buckets=buckets, written=written, removed=removed)


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _remove_others(target_root: Path, keep: set[str]) -> int:
    """Remove what the repository does not have (a planted or renamed object, a symlink)."""
    if not target_root.is_dir():
        return 0
    removed = 0
    for dirpath, dirnames, filenames in os.walk(target_root):
        for name in [*filenames, *(d for d in dirnames if (Path(dirpath) / d).is_symlink())]:
            if name.startswith("."):
                continue  # another process's sync in flight (the store never serves dot-files)
            path = Path(dirpath) / name
            if path.relative_to(target_root).as_posix() not in keep:
                path.unlink()
                removed += 1
    return removed
