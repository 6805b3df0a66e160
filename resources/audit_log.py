"""The audit trail: append-only, hash-chained records of every decision.

Every submission, cancel, retry and promotion decision appends one record. Each
record's hash covers its own fields and the previous record's hash, so editing,
deleting or reordering any row breaks the chain from there on, and `verify()`
names the first broken sequence number. The database also refuses UPDATE and
DELETE on the table (triggers), so tampering needs deliberate DDL first.

SQLite locally, PostgreSQL in production (SQLAlchemy Core; the same SQL on both).
Appends are serialized: SQLite by its write lock (BEGIN IMMEDIATE), PostgreSQL by
a transaction-scoped advisory lock, so two writers never fork the chain.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from resources.redaction import redact

GENESIS = "0" * 64
_ADVISORY_KEY = 0x5155414E54  # "QUANT": one lock id for the audit chain

_metadata = sa.MetaData()
audit_table = sa.Table(
    "quantos_audit",
    _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("team", sa.String(200), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("spec_sha256", sa.String(64), nullable=True),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("decision", sa.String(60), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

_SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS quantos_audit_no_update BEFORE UPDATE ON quantos_audit
       BEGIN SELECT RAISE(ABORT, 'quantos_audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS quantos_audit_no_delete BEFORE DELETE ON quantos_audit
       BEGIN SELECT RAISE(ABORT, 'quantos_audit is append-only'); END""",
]
_POSTGRES_GUARDS = [
    """CREATE OR REPLACE FUNCTION quantos_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'quantos_audit is append-only'; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS quantos_audit_no_change ON quantos_audit",
    """CREATE TRIGGER quantos_audit_no_change BEFORE UPDATE OR DELETE ON quantos_audit
       FOR EACH ROW EXECUTE FUNCTION quantos_audit_append_only()""",
]


class AuditError(RuntimeError):
    """The trail could not be written or read (one-line message)."""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: str
    actor: str
    team: str
    action: str  # submit | cancel | retry | promote | schedule | ...
    subject: str  # submission id, job id, asset key
    spec_sha256: str | None
    params: str  # canonical JSON
    decision: str  # accepted | rejected | passed | failed | ...
    detail: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainReport:
    records: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None


class _HashedFields(TypedDict):
    """The fields of an AuditRecord that its hash covers (all but the two hashes)."""

    seq: int
    at: str
    actor: str
    team: str
    action: str
    subject: str
    spec_sha256: str | None
    params: str
    decision: str
    detail: str


def record_hash(prev_hash: str, fields: Mapping[str, object]) -> str:
    """sha256 over the previous hash and the record's fields as canonical JSON."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _hashed_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("seq", "at", "actor", "team", "action", "subject", "spec_sha256", "params", "decision", "detail")}


class AuditLog:
    """One audit trail in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ensure_schema()

    @classmethod
    def from_url(cls, url: str) -> AuditLog:
        from resources.sql_store import store_engine

        return cls(store_engine(url))

    def _ensure_schema(self) -> None:
        with self.engine.begin() as conn:
            _metadata.create_all(conn, tables=[audit_table])
            guards = _POSTGRES_GUARDS if conn.dialect.name == "postgresql" else _SQLITE_GUARDS
            for statement in guards:
                conn.exec_driver_sql(statement)

    def append(
        self,
        *,
        actor: str,
        team: str,
        action: str,
        subject: str,
        decision: str,
        spec_sha256: str | None = None,
        params: dict[str, Any] | None = None,
        detail: str = "",
    ) -> AuditRecord:
        with self.engine.begin() as conn:
            self._lock(conn)
            last = conn.execute(
                sa.select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
            ).first()
            seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
            fields: _HashedFields = {
                "seq": seq,
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "actor": actor,
                "team": team,
                "action": action,
                "subject": subject,
                "spec_sha256": spec_sha256,
                "params": json.dumps(params or {}, sort_keys=True, separators=(",", ":")),
                "decision": decision,
                "detail": redact(detail),  # an error quoted here may name a URL with a password
            }
            digest = record_hash(prev, fields)
            conn.execute(sa.insert(audit_table).values(**fields, prev_hash=prev, hash=digest))
        return AuditRecord(**fields, prev_hash=prev, hash=digest)

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
        # SQLite: store_engine begins every transaction IMMEDIATE, which takes the
        # write lock before the tail is read, so two appenders cannot both extend it.

    def records(self, subject: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        query = sa.select(audit_table).order_by(audit_table.c.seq)
        if subject is not None:
            query = query.where(audit_table.c.subject == subject)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [AuditRecord(**row._asdict()) for row in conn.execute(query)]

    def verify(self) -> ChainReport:
        """Walk the chain from the genesis hash; the first record that does not fit is named."""
        prev = GENESIS
        count = 0
        expected_seq = 1
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)):
                data = row._asdict()
                count += 1
                if data["seq"] != expected_seq:
                    return ChainReport(count, False, data["seq"], f"record {expected_seq} is missing")
                if data["prev_hash"] != prev:
                    return ChainReport(count, False, data["seq"], "does not follow the previous record")
                if record_hash(prev, _hashed_fields(data)) != data["hash"]:
                    return ChainReport(count, False, data["seq"], "its content was changed after it was written")
                prev = data["hash"]
                expected_seq += 1
        return ChainReport(count, True)
