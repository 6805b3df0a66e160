"""Binary outputs (models, reports, files) in a local folder or an S3 bucket.

Same API for both so the local profile needs no object store: `put` returns the full URI that
goes into Dagster metadata, `get` takes that URI back (or a path relative to the root).
Local writes go to a temp file then `os.replace`, so a reader never sees half a file; an S3
PUT is atomic by itself.

A local store also stands in for a few other buckets (`local_buckets`): a spec names objects
the firm keeps elsewhere (the seed's `s3://queries/bt_fetch.sql`), and on the embedded default
the platform puts its stand-ins under `<root>/buckets/<bucket>/<key>` (resources/local_objects.py).
Only the buckets listed are served so, only from that folder: an `s3://` URI of any other
bucket is still outside the store.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import dagster as dg
from pydantic import Field, PrivateAttr

from resources.atomic_file import write_atomically

# Under a local store's root: `buckets/<bucket>/<key>` holds s3://<bucket>/<key> of a
# `local_buckets` bucket. No output of a node lands here: the IO manager writes under
# models/, reports/, files/ and pipes/ only.
LOCAL_BUCKETS_DIR = "buckets"


class ArtifactNotFound(FileNotFoundError):
    """The object is not in the store (message: `<uri> not found in the object store`)."""


class ArtifactStoreError(ValueError):
    """A path or URI the store cannot serve (outside the root, other bucket, bad scheme)."""


class ArtifactStore(dg.ConfigurableResource):
    """Object store for artifacts: `root` is a folder path or `s3://bucket/prefix`."""

    root: str
    endpoint_url: str | None = None
    region: str | None = None
    # Local store only: other buckets whose s3:// URIs it serves from <root>/buckets/<bucket>/
    # (the platform's local stand-ins, copied there by resources/local_objects.py).
    local_buckets: list[str] = Field(default_factory=list)

    _client: Any = PrivateAttr(default=None)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def put(self, relpath: str, data: bytes) -> str:
        """Store `data` at `relpath` under the root; returns the full URI."""
        relpath = _clean_relpath(relpath)
        if self.is_s3:
            bucket, key = self._bucket_key(relpath)
            self._s3().put_object(Bucket=bucket, Key=key, Body=data)
            return f"s3://{bucket}/{key}"
        target = self._local_path(relpath)
        write_atomically(target, data)
        return target.as_uri()

    def get(self, uri_or_relpath: str) -> bytes:
        """The bytes at a URI returned by `put` (or a path relative to the root)."""
        if self.is_s3:
            bucket, key = self._resolve_s3(uri_or_relpath)
            client = self._s3()
            try:
                return client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:
                raise ArtifactNotFound(
                    f"s3://{bucket}/{key} not found in the object store"
                ) from None
        path = self._resolve_local(uri_or_relpath)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"{path.as_uri()} not found in the object store") from None

    def exists(self, uri_or_relpath: str) -> bool:
        """Whether the object is there (no exception for a missing one)."""
        if self.is_s3:
            bucket, key = self._resolve_s3(uri_or_relpath)
            client = self._s3()
            try:
                client.head_object(Bucket=bucket, Key=key)
                return True
            except client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return self._resolve_local(uri_or_relpath).is_file()

    def delete(self, uri_or_relpath: str) -> bool:
        """Remove the object (lake maintenance: a run's outputs past its ttl_days); False when
        it was not there."""
        if self.is_s3:
            if not self.exists(uri_or_relpath):
                return False
            bucket, key = self._resolve_s3(uri_or_relpath)
            self._s3().delete_object(Bucket=bucket, Key=key)
            return True
        path = self._resolve_local(uri_or_relpath)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def relpath_of(self, uri: str) -> str | None:
        """The path under the root a URI names, or None if it names anything else (another
        bucket or prefix, a scheme this store does not serve, a local file outside the root
        once symlinks are followed). `get` serves any URI; a caller that must stay inside the
        store (a SQL node's sql_uri) asks this first."""
        try:
            if self.is_s3:
                if not uri.startswith("s3://"):
                    return None
                parsed = urlparse(uri)
                bucket, prefix = self._root_bucket_prefix()
                key = parsed.path.lstrip("/")
                if parsed.netloc != bucket or (prefix and not key.startswith(prefix + "/")):
                    return None
                return _clean_relpath(key[len(prefix) + 1 :] if prefix else key)
            if uri.startswith("s3://"):
                return self._local_bucket_relpath(uri)
            if not uri.startswith("file://"):
                return None
            root = self._local_root()
            target = Path(unquote(urlparse(uri).path)).resolve()
            if not target.is_relative_to(root) or target == root:
                return None
            return _clean_relpath(target.relative_to(root).as_posix())
        except ArtifactStoreError:
            return None

    def uri_for(self, relpath: str) -> str:
        """The URI `put(relpath, ...)` would return, without writing."""
        relpath = _clean_relpath(relpath)
        if self.is_s3:
            bucket, key = self._bucket_key(relpath)
            return f"s3://{bucket}/{key}"
        return self._local_path(relpath).as_uri()

    def filesystem_path(self, relpath: str) -> tuple[str, Any]:
        """(path, pyarrow filesystem) of a folder under the root, for writers that take a
        pyarrow filesystem (Ray Train's checkpoints): a local path and None, or
        `bucket/key` and an S3FileSystem on this store's endpoint (credentials: the
        process's AWS environment, as boto3 uses)."""
        relpath = _clean_relpath(relpath)
        if not self.is_s3:
            return str(self._local_path(relpath)), None
        from pyarrow import fs

        bucket, key = self._bucket_key(relpath)
        endpoint = urlparse(self.endpoint_url) if self.endpoint_url else None
        return f"{bucket}/{key}", fs.S3FileSystem(
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
            region=self.region,
        )

    # -- S3 -----------------------------------------------------------------------------------

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region
            )
        return self._client

    def _root_bucket_prefix(self) -> tuple[str, str]:
        parsed = urlparse(self.root)
        if not parsed.netloc:
            raise ArtifactStoreError(f"artifact store root {self.root!r} has no bucket")
        return parsed.netloc, parsed.path.strip("/")

    def _bucket_key(self, relpath: str) -> tuple[str, str]:
        bucket, prefix = self._root_bucket_prefix()
        return bucket, f"{prefix}/{relpath}" if prefix else relpath

    def _resolve_s3(self, uri_or_relpath: str) -> tuple[str, str]:
        if uri_or_relpath.startswith("s3://"):
            parsed = urlparse(uri_or_relpath)
            return parsed.netloc, parsed.path.lstrip("/")
        if "://" in uri_or_relpath:
            raise ArtifactStoreError(
                f"{uri_or_relpath}: not an s3:// URI (store root is {self.root})"
            )
        return self._bucket_key(_clean_relpath(uri_or_relpath))

    # -- local --------------------------------------------------------------------------------

    def _local_root(self) -> Path:
        root = self.root.removeprefix("file://")
        return Path(root).expanduser().resolve()

    def local_folder(self) -> Path:
        """The folder of a local store (ArtifactStoreError for an S3 one)."""
        if self.is_s3:
            raise ArtifactStoreError(f"artifact store {self.root} is not a local folder")
        return self._local_root()

    def _local_path(self, relpath: str) -> Path:
        return self._local_root() / relpath

    def _local_bucket_relpath(self, uri: str) -> str | None:
        """`buckets/<bucket>/<key>` for s3://<bucket>/<key> of a listed bucket, None otherwise.
        The key is taken literally (S3 keys have no escapes: `%2e%2e` is a name, not `..`),
        `..`, empty and dot-file parts are refused, and the file, once symlinks are followed, must
        still be inside that bucket's folder."""
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if (
            bucket not in self.local_buckets
            or not key
            or any(p.startswith(".") for p in key.split("/"))
        ):
            return None  # dot-files are never stand-ins (a sync's temporary files are)
        relpath = _clean_relpath(f"{LOCAL_BUCKETS_DIR}/{bucket}/{key}")
        folder = self._local_root() / LOCAL_BUCKETS_DIR / bucket
        target = (self._local_root() / relpath).resolve()
        if not target.is_relative_to(folder) or target == folder:
            return None
        return relpath

    def _resolve_local(self, uri_or_relpath: str) -> Path:
        if uri_or_relpath.startswith("file://"):
            return Path(unquote(urlparse(uri_or_relpath).path))
        if uri_or_relpath.startswith("s3://"):
            relpath = self._local_bucket_relpath(uri_or_relpath)
            if relpath is None:
                raise ArtifactStoreError(
                    f"{uri_or_relpath}: not in this local store (root {self.root}; "
                    f"buckets it stands in for: {', '.join(self.local_buckets) or 'none'})"
                )
            return self._local_path(relpath)
        if "://" in uri_or_relpath:
            raise ArtifactStoreError(
                f"{uri_or_relpath}: not a local path (store root is {self.root})"
            )
        if os.path.isabs(uri_or_relpath):
            return Path(uri_or_relpath)
        return self._local_path(_clean_relpath(uri_or_relpath))


def _clean_relpath(relpath: str) -> str:
    """A relative POSIX path that cannot escape the root."""
    parts = PurePosixPath(relpath.replace("\\", "/")).parts
    if not parts or relpath.startswith("/") or any(p in ("..", "") for p in parts):
        raise ArtifactStoreError(
            f"{relpath!r}: artifact paths must be relative and stay under the root"
        )
    return "/".join(p for p in parts if p != ".")
