"""Where the audit chain's head is kept outside the database the gateway writes.

After each append the writer adds the new head (seq, hash, HMAC) to the anchor; `quantos
audit verify` then knows how far the chain reached, so deleting records from its end, or
wiping the store, is a failure instead of a shorter chain that still verifies. The anchor
opens with a genesis record: the key the trail is signed with, and from which record on
(0 for a new trail; the head at first start for a trail written before the key existed).

- A local file (the embedded default, `$QUANTOS_DATA_DIR/audit.anchor`): JSON lines,
  created 0600, every line one `write()` on an O_APPEND descriptor, so concurrent writers
  on one machine interleave whole lines and never lose one.
- An S3 prefix in production, in a bucket with versioning and object lock (a default
  retention): every head is a *new key* `heads/<999999999999 - seq>` written with
  `If-None-Match: *`. A new key per head, not a new version of one object: concurrent
  gateways each write their own key, nothing can overwrite anything, and because the
  names sort newest first one listing call finds the highest head (the latest *version*
  of a single object would be whichever writer finished last, not the highest seq).
  Object lock keeps every head from being deleted; a delete marker or a second version
  of a key is reported by verify as tampering.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

TAIL_BYTES = 64 * 1024  # the newest heads are in the file's last lines
_INVERT = 999_999_999_999  # heads/<_INVERT - seq>: the highest seq sorts first


class AnchorError(RuntimeError):
    """The anchor cannot be read or written (one-line message naming it)."""


@dataclass(frozen=True)
class Genesis:
    """Where the keyed chain begins: records 1..seq may predate the key (0: none do)."""

    seq: int
    hash: str
    key_id: str
    at: str
    note: str


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    hmac: str | None


@dataclass(frozen=True)
class AnchorState:
    """What verify reads: `exists` False means nothing is at the location at all."""

    exists: bool
    genesis: Genesis | None = None
    head: Head | None = None  # the highest head written
    problem: str | None = None  # tampering seen in the anchor itself (one line)


class Anchor(Protocol):
    location: str

    def check_writable(self) -> None: ...
    def genesis(self) -> Genesis | None: ...
    def start(self, genesis: Genesis) -> bool: ...
    def append(self, head: Head) -> None: ...
    def read(self) -> AnchorState: ...


def open_anchor(
    location: str, *, s3_endpoint: str | None = None, s3_region: str | None = None
) -> Anchor:
    """`location`: an absolute path (or file://PATH) or s3://BUCKET/PREFIX
    (QUANTOS_AUDIT_ANCHOR)."""
    if location.startswith("s3://"):
        parsed = urlparse(location)
        if not parsed.netloc:
            raise AnchorError(f"QUANTOS_AUDIT_ANCHOR {location!r}: expected s3://BUCKET/PREFIX")
        return S3Anchor(
            parsed.netloc, parsed.path.strip("/"), endpoint=s3_endpoint, region=s3_region
        )
    path = location.removeprefix("file://")
    if not os.path.isabs(path):
        raise AnchorError(
            f"QUANTOS_AUDIT_ANCHOR {location!r}: expected an absolute path or s3://BUCKET/PREFIX"
        )
    return FileAnchor(Path(path))


def _head_line(head: Head) -> bytes:
    return (json.dumps(asdict(head), separators=(",", ":")) + "\n").encode()


def _genesis_line(genesis: Genesis) -> bytes:
    return (json.dumps({"genesis": asdict(genesis)}, separators=(",", ":")) + "\n").encode()


def _as_head(data: Any) -> Head:
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("seq"), int)
        or not isinstance(data.get("hash"), str)
    ):
        raise TypeError("not a head")
    mac = data.get("hmac")
    return Head(data["seq"], data["hash"], mac if isinstance(mac, str) else None)


def _as_genesis(data: Any) -> Genesis:
    if not isinstance(data, dict):
        raise TypeError("not a genesis record")
    return Genesis(
        int(data["seq"]),
        str(data["hash"]),
        str(data["key_id"]),
        str(data["at"]),
        str(data.get("note", "")),
    )


class FileAnchor:
    """JSON lines: the genesis first, then one head per append."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def check_writable(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AnchorError(f"audit anchor {self.path}: {err.strerror}") from None

    def genesis(self) -> Genesis | None:
        try:
            with self.path.open("rb") as f:
                first = f.readline()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise AnchorError(f"audit anchor {self.path}: {err.strerror}") from None
        try:
            return _as_genesis(json.loads(first)["genesis"])
        except (ValueError, KeyError, TypeError):
            return None

    def start(self, genesis: Genesis) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        except OSError as err:
            raise AnchorError(f"audit anchor {self.path}: {err.strerror}") from None
        try:
            os.write(fd, _genesis_line(genesis))
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def append(self, head: Head) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, _head_line(head))  # one write: concurrent appenders never split a line
            finally:
                os.close(fd)
        except OSError as err:
            raise AnchorError(f"audit anchor {self.path}: {err.strerror}") from None

    def read(self) -> AnchorState:
        try:
            size = self.path.stat().st_size
            with self.path.open("rb") as f:
                first = f.readline()
                start = max(0, size - TAIL_BYTES)
                f.seek(start)
                tail = f.read()
        except FileNotFoundError:
            return AnchorState(exists=False)
        except OSError as err:
            raise AnchorError(f"audit anchor {self.path}: {err.strerror}") from None
        genesis = None
        with contextlib.suppress(ValueError, KeyError, TypeError):
            genesis = _as_genesis(json.loads(first)["genesis"])
        lines = tail.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first is cut by the seek
        heads: list[Head] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict) and "genesis" in data:
                    continue
                heads.append(_as_head(data))
            except (ValueError, TypeError):
                return AnchorState(
                    True,
                    genesis,
                    None,
                    f"the anchor {self.path} holds a line that is not a head (edited?)",
                )
        return _state(genesis, heads, self.location)


def _state(genesis: Genesis | None, heads: list[Head], location: str) -> AnchorState:
    if not heads:
        return AnchorState(True, genesis, None)
    top = max(h.seq for h in heads)
    at_top = {(h.hash, h.hmac) for h in heads if h.seq == top}
    head = next(h for h in heads if h.seq == top)
    if len(at_top) > 1:
        return AnchorState(
            True,
            genesis,
            head,
            f"the anchor {location} holds two different heads for record {top} (the store was "
            "wiped or replaced and written again)",
        )
    return AnchorState(True, genesis, head)


class S3Anchor:
    """`<prefix>/genesis.json` and `<prefix>/heads/<999999999999 - seq>.json` in a locked bucket."""

    def __init__(
        self, bucket: str, prefix: str, *, endpoint: str | None, region: str | None
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.location = f"s3://{bucket}/{prefix}"
        self._endpoint = endpoint
        self._region = region
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self._endpoint, region_name=self._region)
        return self._client

    @property
    def _genesis_key(self) -> str:
        return f"{self.prefix}genesis.json"

    def _head_key(self, seq: int) -> str:
        return f"{self.prefix}heads/{_INVERT - seq:012d}.json"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as err:
            error = err.response.get("Error", {})
            raise AnchorError(
                f"audit anchor {self.location}: {what}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as err:
            raise AnchorError(f"audit anchor {self.location}: {what}: {err}") from None

    def check_writable(self) -> None:
        """Versioning on and object lock with a default retention, else the heads could be
        deleted."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            config = (
                self._s3()
                .get_object_lock_configuration(Bucket=self.bucket)
                .get("ObjectLockConfiguration", {})
            )
        except ClientError as err:
            error = err.response.get("Error", {})
            if error.get("Code") != "ObjectLockConfigurationNotFoundError":
                raise AnchorError(
                    f"audit anchor {self.location}: object lock: {error.get('Code')}: "
                    f"{error.get('Message')}"
                ) from None
            config = {}
        except BotoCoreError as err:
            raise AnchorError(f"audit anchor {self.location}: {err}") from None
        if config.get("ObjectLockEnabled") != "Enabled" or not config.get("Rule", {}).get(
            "DefaultRetention"
        ):
            raise AnchorError(
                f"audit anchor {self.location}: bucket {self.bucket} needs object lock with a "
                "default retention "
                "(create it with object lock enabled, then set a COMPLIANCE default retention; "
                "docs/deployment.md)"
            )

    def genesis(self) -> Genesis | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self._s3().get_object(Bucket=self.bucket, Key=self._genesis_key)["Body"].read()
        except ClientError as err:
            error = err.response.get("Error", {})
            if error.get("Code") in ("NoSuchKey", "404"):
                return None
            raise AnchorError(
                f"audit anchor {self.location}: genesis: {error.get('Code')}: "
                f"{error.get('Message')}"
            ) from None
        except BotoCoreError as err:
            raise AnchorError(f"audit anchor {self.location}: genesis: {err}") from None
        try:
            return _as_genesis(json.loads(body)["genesis"])
        except (ValueError, KeyError, TypeError):
            return None

    def _put(self, key: str, body: bytes) -> bool:
        """False when the key exists (If-None-Match: *): nothing is ever overwritten."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ContentType="application/json",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            error = err.response.get("Error", {})
            raise AnchorError(
                f"audit anchor {self.location}: put {key}: {error.get('Code')}: "
                f"{error.get('Message')}"
            ) from None
        except BotoCoreError as err:
            raise AnchorError(f"audit anchor {self.location}: put {key}: {err}") from None
        return True

    def start(self, genesis: Genesis) -> bool:
        return self._put(self._genesis_key, _genesis_line(genesis))

    def append(self, head: Head) -> None:
        if not self._put(self._head_key(head.seq), _head_line(head)):
            raise AnchorError(
                f"audit anchor {self.location}: it already holds a head for record {head.seq} "
                "(the store was wiped or replaced and written again)"
            )

    def read(self) -> AnchorState:
        s3 = self._s3()
        genesis_versions = self._call(
            "list genesis",
            s3.list_object_versions,
            Bucket=self.bucket,
            Prefix=self._genesis_key,
            MaxKeys=10,
        )
        heads_page = self._call(
            "list heads",
            s3.list_object_versions,
            Bucket=self.bucket,
            Prefix=f"{self.prefix}heads/",
            MaxKeys=20,
        )
        g_versions = [
            v for v in genesis_versions.get("Versions", []) if v["Key"] == self._genesis_key
        ]
        g_markers = [
            m for m in genesis_versions.get("DeleteMarkers", []) if m["Key"] == self._genesis_key
        ]
        h_versions = heads_page.get("Versions", [])
        h_markers = heads_page.get("DeleteMarkers", [])
        if not g_versions and not h_versions and not g_markers and not h_markers:
            return AnchorState(exists=False)
        genesis = None
        if g_versions:
            oldest = min(g_versions, key=lambda v: v["LastModified"])
            body = self._call(
                "get genesis",
                s3.get_object,
                Bucket=self.bucket,
                Key=self._genesis_key,
                VersionId=oldest["VersionId"],
            )["Body"].read()
            try:
                genesis = _as_genesis(json.loads(body)["genesis"])
            except (ValueError, KeyError, TypeError):
                return AnchorState(
                    True,
                    None,
                    None,
                    f"the anchor {self.location}: genesis.json is not a genesis record",
                )
        if g_markers or len(g_versions) > 1:
            return AnchorState(
                True,
                genesis,
                None,
                f"the anchor {self.location}: genesis.json was deleted or overwritten",
            )
        if not h_versions and not h_markers:
            return AnchorState(True, genesis, None)
        newest_key = min([v["Key"] for v in h_versions] + [m["Key"] for m in h_markers])
        seq = _INVERT - int(newest_key.rsplit("/", 1)[-1].split(".")[0])
        versions = [v for v in h_versions if v["Key"] == newest_key]
        if any(m["Key"] == newest_key for m in h_markers) or len(versions) != 1:
            return AnchorState(
                True,
                genesis,
                None,
                f"the anchor {self.location}: the head of record {seq} was deleted or overwritten "
                "(S3 delete marker or second version)",
            )
        body = self._call(
            "get head",
            s3.get_object,
            Bucket=self.bucket,
            Key=newest_key,
            VersionId=versions[0]["VersionId"],
        )["Body"].read()
        try:
            head = _as_head(json.loads(body))
        except (ValueError, TypeError):
            return AnchorState(
                True, genesis, None, f"the anchor {self.location}: {newest_key} is not a head"
            )
        if head.seq != seq:
            return AnchorState(
                True,
                genesis,
                None,
                f"the anchor {self.location}: {newest_key} holds record {head.seq}, not {seq}",
            )
        return AnchorState(True, genesis, head)
