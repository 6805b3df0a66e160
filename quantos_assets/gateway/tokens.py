"""Bearer tokens for the submission API: each maps to one team and its scopes.

Only a token's sha256 is stored (the file named by QUANTOS_API_TOKENS, mode 0600),
so a leaked store does not leak credentials; `quantos token create` prints the
token once. Tokens are 256 random bits, so an unsalted hash is not guessable and
lookups stay a dict access.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SCOPES = ("submit", "read", "admin")
TOKEN_PREFIX = "qos_"


class TokenStoreError(ValueError):
    """A bad token store file or a bad create/revoke request (one line)."""


@dataclass(frozen=True)
class TokenRecord:
    id: str  # the first 12 hex digits of the hash: safe to show, used to revoke
    sha256: str
    team: str
    scopes: list[str]
    created_at: str
    note: str = ""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the team a token belongs to and what it may do."""

    token_id: str
    team: str
    scopes: frozenset[str] = field(default_factory=frozenset)

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The token file, re-read when it changes on disk (create/revoke by the CLI)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, TokenRecord] = {}

    def _load(self) -> dict[str, TokenRecord]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._by_hash = {r.sha256: r for r in _read(self.path)}
                self._stamp = stamp
            return self._by_hash

    def authenticate(self, token: str) -> Principal | None:
        record = self._load().get(hash_token(token))
        if record is None:
            return None
        return Principal(token_id=record.id, team=record.team, scopes=frozenset(record.scopes))

    def create(self, team: str, scopes: list[str], note: str = "") -> tuple[str, TokenRecord]:
        """A new token (returned once) and its stored record."""
        if not team or not team.replace("-", "").replace("_", "").isalnum():
            raise TokenStoreError(f"team {team!r}: letters, digits, '-' and '_' only")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise TokenStoreError(f"scopes {scopes}: choose from {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = hash_token(token)
        record = TokenRecord(
            id=digest[:12],
            sha256=digest,
            team=team,
            scopes=sorted(set(scopes)),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            note=note,
        )
        with self._lock:
            records = _read(self.path)
            _write(self.path, [*records, record])
        return token, record

    def revoke(self, token_id: str) -> TokenRecord:
        with self._lock:
            records = _read(self.path)
            match = [r for r in records if r.id == token_id or r.sha256 == token_id]
            if not match:
                raise TokenStoreError(f"no token with id {token_id!r} in {self.path}")
            _write(self.path, [r for r in records if r not in match])
        return match[0]

    def list(self) -> list[TokenRecord]:
        return list(_read(self.path))


def _read(path: Path) -> list[TokenRecord]:
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
        return [TokenRecord(**item) for item in raw["tokens"]]
    except (ValueError, KeyError, TypeError) as err:
        raise TokenStoreError(f"{path}: not a QuantOS token store ({type(err).__name__}: {err})") from None


def _write(path: Path, records: list[TokenRecord]) -> None:
    """Atomically (temp file + rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"tokens": [asdict(r) for r in records]}, out, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
