"""Bearer tokens for the submission API: each maps to one team and its scopes.

Only a token's sha256 is stored (the file named by QUANTOS_API_TOKENS, mode 0600),
so a leaked store does not leak credentials; `quantos token create` prints the
token once. Tokens are 256 random bits, so an unsalted hash is not guessable and
lookups stay a dict access.

Every token expires (default 90 days, at most 365): a token copied into a CI log or a
laptop stops working on its own. There is no "never": a service token is rotated once
a year at least, and `quantos token list` shows when. A record written before tokens
had an expiry is read as expiring `MAX_TTL` after its creation, the longest a new
token may live, so an upgrade neither locks out a recent integration nor leaves an
old token valid forever.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from resources.atomic_file import write_atomically

SCOPES = ("submit", "read", "admin")
TOKEN_PREFIX = "qos_"
DEFAULT_TTL = timedelta(days=90)
MAX_TTL = timedelta(days=365)
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenStoreError(ValueError):
    """A bad token store file or a bad create/revoke request (one line)."""


class TokenExpired(Exception):
    """A known token past its expiry: the caller gets 401 saying so, not "invalid"."""

    def __init__(self, record: TokenRecord) -> None:
        super().__init__(
            f"token {record.id} expired at {record.expiry.isoformat(timespec='seconds')}"
        )
        self.record = record


def parse_ttl(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `2w`, `3600s`: a lifetime between one second and `MAX_TTL`."""
    found = re.fullmatch(r"\s*(\d{1,9})\s*([smhdw])\s*", text)
    if not found:
        raise TokenStoreError(
            f"--ttl {text!r}: expected a number and a unit s, m, h, d or w (e.g. 90d, 12h)"
        )
    ttl = timedelta(seconds=int(found.group(1)) * _TTL_UNITS[found.group(2)])
    if not timedelta(0) < ttl <= MAX_TTL:
        raise TokenStoreError(
            f"--ttl {text!r}: a token lives more than 0 s and at most {MAX_TTL.days}d"
        )
    return ttl


@dataclass(frozen=True)
class TokenRecord:
    id: str  # the first 12 hex digits of the hash: safe to show, used to revoke
    sha256: str
    team: str
    scopes: list[str]
    created_at: str
    note: str = ""
    expires_at: str | None = None  # None: written before expiry existed (see the module docstring)

    @property
    def expiry(self) -> datetime:
        if self.expires_at is not None:
            return datetime.fromisoformat(self.expires_at)
        return datetime.fromisoformat(self.created_at) + MAX_TTL

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expiry


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
        """The token's principal; None if unknown or revoked; raises TokenExpired."""
        record = self._load().get(hash_token(token))
        if record is None:
            return None
        if record.expired():
            raise TokenExpired(record)
        return Principal(token_id=record.id, team=record.team, scopes=frozenset(record.scopes))

    def create(
        self, team: str, scopes: list[str], note: str = "", ttl: timedelta = DEFAULT_TTL
    ) -> tuple[str, TokenRecord]:
        """A new token (returned once) and its stored record, valid for `ttl`."""
        if not team or not team.replace("-", "").replace("_", "").isalnum():
            raise TokenStoreError(f"team {team!r}: letters, digits, '-' and '_' only")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise TokenStoreError(f"scopes {scopes}: choose from {', '.join(SCOPES)}")
        if not timedelta(0) < ttl <= MAX_TTL:
            raise TokenStoreError(
                f"ttl {ttl}: a token lives more than 0 s and at most {MAX_TTL.days}d"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = hash_token(token)
        now = datetime.now(UTC).replace(microsecond=0)
        record = TokenRecord(
            id=digest[:12],
            sha256=digest,
            team=team,
            scopes=sorted(set(scopes)),
            created_at=now.isoformat(),
            note=note,
            expires_at=(now + ttl).isoformat(),
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
        records = [TokenRecord(**item) for item in raw["tokens"]]
        for record in records:
            if record.expiry.tzinfo is None:
                raise ValueError(f"token {record.id}: created_at/expires_at without a UTC offset")
        return records
    except (ValueError, KeyError, TypeError) as err:
        raise TokenStoreError(
            f"{path}: not a QuantOS token store ({type(err).__name__}: {err})"
        ) from None


def _write(path: Path, records: list[TokenRecord]) -> None:
    """Atomically (temp file + rename), readable by the owner only."""
    write_atomically(path, json.dumps({"tokens": [asdict(r) for r in records]}, indent=2).encode())
