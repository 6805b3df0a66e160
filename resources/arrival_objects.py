"""Listing the objects a data-arrival trigger watches: an S3 prefix, or a directory under the
landing root, one bounded page at a time and in key order (so a listing can resume after a
key, as S3's StartAfter does).

Each object comes with its version: S3's ETag (a new upload of other bytes is a new
version; the same bytes again are not), locally `mtime_ns-size`. Its `modified` time orders
arrivals: S3's LastModified, locally the later of mtime and ctime (a file `mv`'d into place
keeps its old mtime, but its ctime is the move). Credentials are the profile's (the default
boto3 chain: env, IRSA), never anything a spec says; errors are one line naming the bucket or
directory and the cause.
"""

from __future__ import annotations

import glob as globbing
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resources.redaction import redact


class ArrivalSourceError(Exception):
    """The bucket or directory cannot be listed: one line naming it and the cause."""


@dataclass(frozen=True)
class ListedObject:
    path: str  # the S3 key, or the path relative to the listed root
    version: str
    modified: float  # seconds since the epoch


@dataclass(frozen=True)
class ListedPage:
    objects: list[ListedObject]  # in key order, all after `start_after`
    truncated: bool  # more keys follow `last`
    last: str | None = None  # the last key listed, matched or not (where to resume)


# S3's page size; a tick lists at most `max_keys` keys in pages of this many.
PAGE_KEYS = 1000


def s3_client(endpoint_url: str | None, region: str | None) -> Any:
    """A client with short timeouts and few retries: a sensor tick must not hang on a
    bucket that does not answer (the next tick tries again)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def list_s3(
    endpoint_url: str | None,
    region: str | None,
    bucket: str,
    prefix: str,
    matches: Callable[[str], bool],
    start_after: str | None,
    max_keys: int,
) -> ListedPage:
    """The objects under `prefix` that `matches` takes, after `start_after`, at most
    `max_keys` keys listed (matched or not)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _list_s3(
            s3_client(endpoint_url, region), bucket, prefix, matches, start_after, max_keys
        )
    except ClientError as err:
        error = err.response.get("Error", {})
        code = error.get("Code", "error")
        message = str(error.get("Message") or "").splitlines()[0:1]
        cause = code + (f" ({message[0]})" if message else "")
    except (BotoCoreError, ValueError) as err:  # ValueError: a malformed endpoint URL
        cause = _first_line(err)
    raise ArrivalSourceError(redact(f"s3://{bucket}: cannot list: {cause}"))


def _list_s3(
    client: Any,
    bucket: str,
    prefix: str,
    matches: Callable[[str], bool],
    start_after: str | None,
    max_keys: int,
) -> ListedPage:
    found: list[ListedObject] = []
    listed = 0
    last: str | None = None
    token: str | None = None
    while True:
        args: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": prefix,
            "MaxKeys": min(PAGE_KEYS, max_keys - listed),
        }
        if token:
            args["ContinuationToken"] = token
        elif start_after:
            args["StartAfter"] = start_after
        page = client.list_objects_v2(**args)
        for item in page.get("Contents", []):
            listed += 1
            key = last = item["Key"]
            if matches(key):
                version = str(item.get("ETag", "")).strip('"') or "-"
                found.append(ListedObject(key, version, item["LastModified"].timestamp()))
        token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        if token is None or listed >= max_keys:
            return ListedPage(found, truncated=token is not None, last=last)


def list_local(
    root: Path,
    pattern: str,
    start_after: str | None,
    max_keys: int,
) -> ListedPage:
    """The regular files under `root` matching the path glob `pattern` (segment by segment,
    hidden files left out: a writer's `.part` file is not an arrival), after `start_after`,
    at most `max_keys`. A file whose real path leaves `root` (a symlink) is left out."""
    base = root.resolve()
    if not base.is_dir():
        raise ArrivalSourceError(f"{root}: cannot list: no such directory")
    try:
        paths = sorted(globbing.glob(pattern, root_dir=base))
    except OSError as err:
        raise ArrivalSourceError(redact(f"{root}: cannot list: {_first_line(err)}")) from None
    if start_after is not None:
        paths = [p for p in paths if p > start_after]
    found: list[ListedObject] = []
    page = paths[:max_keys]
    for rel in page:
        path = base / rel
        try:
            info = path.lstat()
            inside = path.resolve().is_relative_to(base)
        except OSError:
            continue  # gone since the listing: it will not start a run
        if not stat.S_ISREG(info.st_mode) or not inside:
            continue
        version = f"{info.st_mtime_ns}-{info.st_size}"
        found.append(ListedObject(rel, version, max(info.st_mtime, info.st_ctime)))
    return ListedPage(found, truncated=len(paths) > max_keys, last=page[-1] if page else None)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
