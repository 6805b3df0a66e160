"""The audit trail's HMAC key: a secret the trail's database never holds.

Whoever can write the database can rewrite every record and recompute every sha256 of the
chain; without this key they cannot recompute the records' HMACs, so `quantos audit verify`
catches the rewrite. It comes from QUANTOS_AUDIT_KEY (a Kubernetes Secret in staging/prod),
else, on the embedded default only, from a key file under the data dir, created 0600 with
32 random bytes the first time a writer needs it. A verifier never creates it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

MIN_SECRET_CHARS = 32
_KEY_ID_LABEL = b"quantos-audit-key-id"


class AuditKeyError(RuntimeError):
    """No usable key (one-line message naming the variable or file)."""


@dataclass(frozen=True)
class AuditKey:
    secret: bytes = field(repr=False)
    source: str  # "QUANTOS_AUDIT_KEY" or the key file's path: for messages, never the secret

    @property
    def id(self) -> str:
        """A fingerprint of the key (not the key): the anchor's genesis names the key it began
        with."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def sign(self, record_hash: str) -> str:
        return hmac.new(self.secret, record_hash.encode(), hashlib.sha256).hexdigest()

    def signed(self, record_hash: str, mac: str) -> bool:
        return hmac.compare_digest(self.sign(record_hash), mac)


@dataclass(frozen=True)
class AuditKeySource:
    """Where the key comes from: QUANTOS_AUDIT_KEY, else (embedded default) `path`."""

    secret: str | None = field(default=None, repr=False)
    path: Path | None = None

    def load(self, *, create: bool) -> AuditKey:
        """The key; `create`: a writer on the embedded default makes the key file if absent."""
        if self.secret is not None:
            if len(self.secret) < MIN_SECRET_CHARS:
                raise AuditKeyError(
                    f"QUANTOS_AUDIT_KEY: at least {MIN_SECRET_CHARS} characters (e.g. `openssl "
                    "rand -hex 32`), "
                    f"got {len(self.secret)}"
                )
            return AuditKey(self.secret.encode(), "QUANTOS_AUDIT_KEY")
        if self.path is None:
            raise AuditKeyError(
                "QUANTOS_AUDIT_KEY is not set: staging/prod key the audit trail with a secret "
                "from a Kubernetes Secret (docs/deployment.md)"
            )
        if create and not self.path.exists():
            _create_key_file(self.path)
        try:
            raw = self.path.read_text().strip()
        except FileNotFoundError:
            raise AuditKeyError(
                f"audit key {self.path} does not exist and QUANTOS_AUDIT_KEY is not set"
            ) from None
        except OSError as err:
            raise AuditKeyError(f"audit key {self.path}: {err.strerror}") from None
        if len(raw) < MIN_SECRET_CHARS:
            raise AuditKeyError(
                f"audit key {self.path}: at least {MIN_SECRET_CHARS} characters, got {len(raw)}"
            )
        return AuditKey(raw.encode(), str(self.path))


def _create_key_file(path: Path) -> None:
    """0600 from the start (never a moment world-readable), written whole before it appears
    under its name (a hard link fails if the name exists): two writers racing keep one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
