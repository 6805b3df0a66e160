"""The audit trail: append-only, hash-chained, keyed and anchored records of every decision.

Every submission, cancel, retry and promotion decision appends one record. Each
record's hash covers its own fields and the previous record's hash, so editing,
deleting or reordering any row breaks the chain from there on, and `verify()`
names the first broken sequence number. The database also refuses UPDATE and
DELETE on the table (triggers), so tampering needs deliberate DDL first.

A hash chain alone proves nothing against whoever can write the database: they can
drop the last records, or rewrite every record and recompute every hash. So each
record also carries an HMAC of its hash under a key the database never holds
(resources/audit_key.py), and after each append its head goes to an anchor outside
the database (resources/audit_anchor.py). `verify()` then fails on a rewrite (HMAC),
on a truncation or wipe (the store ends before the anchored head) and on a missing
store, table or anchor; it opens the store read-only and creates nothing.

SQLite locally, PostgreSQL in production (SQLAlchemy Core; the same SQL on both).
Appends are serialized: SQLite by its write lock (BEGIN IMMEDIATE), PostgreSQL by
a transaction-scoped advisory lock, so two writers never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from resources.audit_anchor import Anchor, AnchorError, AnchorState, Genesis, Head
from resources.audit_key import AuditKey
from resources.redaction import redact
from resources.sql_store import reading

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_ADVISORY_KEY = 0x5155414E54  # "QUANT": one lock id for the audit chain
TABLE = "quantos_audit"
# A detail is one line for a person; a longer one (an echoed request field) is cut here.
MAX_DETAIL_CHARS = 1000
MAX_PARAMS_BYTES = 16 * 1024  # bounded(): params of accepted decisions no quota counts

_metadata = sa.MetaData()
audit_table = sa.Table(
    TABLE,
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
    # HMAC-SHA256 of `hash` under the audit key; NULL only in records written before the
    # key existed (a trail migrated at first start: the anchor's genesis says up to where)
    sa.Column("hmac", sa.String(64), nullable=True),
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


# Built once: the two statements of every append (building and cache-keying a statement per
# call is most of an append's cost on the submit path).
_TAIL = sa.select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
_INSERT = sa.insert(audit_table)


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
    hmac: str | None = None


@dataclass(frozen=True)
class ChainReport:
    """`problem` is one line; `first_bad_seq` names the record when one record is at fault,
    None when the trail as a whole is (store, table or anchor missing, truncation)."""

    records: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None
    anchored_seq: int | None = None  # the highest head the anchor holds
    note: str | None = (
        None  # an ok trail's caveat (records not anchored yet, records before the key)
    )


class AuditEntry(TypedDict):
    """What a caller says of one decision (the trail adds seq, time, hashes and the HMAC)."""

    actor: str
    team: str
    action: str
    subject: str
    decision: str
    spec_sha256: NotRequired[str | None]
    params: NotRequired[dict[str, Any] | None]
    detail: NotRequired[str]


class _HashedFields(TypedDict):
    """The fields of an AuditRecord that its hash covers (all but the hashes and the HMAC)."""

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
    return {
        k: row[k]
        for k in (
            "seq",
            "at",
            "actor",
            "team",
            "action",
            "subject",
            "spec_sha256",
            "params",
            "decision",
            "detail",
        )
    }


def content_digest(value: Any) -> dict[str, Any]:
    """What the trail keeps of content it must not store whole: its sha256 and size (canonical
    JSON)."""
    raw = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def bounded(params: dict[str, Any], limit: int = MAX_PARAMS_BYTES) -> dict[str, Any]:
    """`params` as they are, or their digest when larger than `limit`: for accepted decisions
    that no quota counts (a job's edits), so no caller can make one record arbitrarily large."""
    digest = content_digest(params)
    if digest["bytes"] <= limit:
        return params
    return {"digest": digest, "note": f"larger than {limit} bytes: kept as sha256 and size"}


def capped(detail: str, limit: int = MAX_DETAIL_CHARS) -> str:
    if len(detail) <= limit:
        return detail
    return f"{detail[:limit]}... ({len(detail)} characters, cut)"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class AuditLog:
    """One audit trail in one database, keyed by `key` and anchored in `anchor`.

    `writer` (the gateway, a run's gates): the table, its guards and the HMAC column are
    created or migrated, and the anchor gets its genesis if it has none. A reader
    (`quantos audit verify|show`) touches nothing."""

    def __init__(
        self, engine: Engine, *, key: AuditKey | None, anchor: Anchor, writer: bool = True
    ) -> None:
        self.engine = engine
        self.key = key
        self.anchor = anchor
        self.missing_key = "no audit key"  # a reader's: why `key` is None (verify reports it)
        if writer:
            if key is None:
                raise AuditError("an audit writer needs the audit key")
            try:
                anchor.check_writable()
            except AnchorError as err:
                raise AuditError(str(err)) from None
            self._ensure_schema()
            self._ensure_anchored(key)

    def _ensure_schema(self) -> None:
        with self.engine.begin() as conn:
            self._lock(conn)
            _metadata.create_all(conn, tables=[audit_table])
            if "hmac" not in {c["name"] for c in sa.inspect(conn).get_columns(TABLE)}:
                # a trail written before the key existed: its head is anchored next
                # (_ensure_anchored)
                conn.execute(sa.text(f"ALTER TABLE {TABLE} ADD COLUMN hmac VARCHAR(64)"))
            guards = _POSTGRES_GUARDS if conn.dialect.name == "postgresql" else _SQLITE_GUARDS
            for statement in guards:
                conn.exec_driver_sql(statement)

    def _ensure_anchored(self, key: AuditKey) -> None:
        """Give the anchor its genesis: 0 for a new trail; the current head for a trail written
        by a version without the key (it is trusted from here on). An anchor lost while keyed
        records exist is not re-created: verify must keep failing until someone looks."""
        with self.engine.begin() as conn:
            self._lock(conn)
            try:
                genesis = self.anchor.genesis()
                if genesis is not None:
                    if genesis.key_id != key.id:
                        raise AuditError(_wrong_key(key, genesis, self.anchor.location))
                    return
                last = conn.execute(
                    sa.select(audit_table.c.seq, audit_table.c.hash, audit_table.c.hmac)
                    .order_by(audit_table.c.seq.desc())
                    .limit(1)
                ).first()
                if last is None:
                    self.anchor.start(Genesis(0, GENESIS, key.id, _now(), "new trail"))
                elif last.hmac is None:
                    note = (
                        f"records 1-{last.seq} were written before the audit key; anchored at "
                        "first start"
                    )
                    self.anchor.start(Genesis(last.seq, last.hash, key.id, _now(), note))
                    log.warning("audit trail: %s (%s)", note, self.anchor.location)
                else:
                    log.error(
                        "audit anchor %s has no genesis but the trail has %d keyed records: the "
                        "anchor was lost "
                        "or replaced; `quantos audit verify` fails until it is restored",
                        self.anchor.location,
                        last.seq,
                    )
            except AnchorError as err:
                raise AuditError(str(err)) from None

    def append(self, **entry: Unpack[AuditEntry]) -> AuditRecord:
        with self.engine.begin() as conn:
            record = self.record(conn, **entry)
        self.anchor_head(record)
        return record

    def record(self, conn: Connection, **entry: Unpack[AuditEntry]) -> AuditRecord:
        """Append inside the caller's write transaction on this trail's database, so the
        decision and what it decided commit together (an accepted submission always has its
        record). The caller passes the record to `anchor_head` after the commit."""
        if self.key is None:
            raise AuditError("a reader of the audit trail cannot append to it")
        self._lock(conn)
        last = conn.execute(_TAIL).first()
        seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
        fields: _HashedFields = {
            "seq": seq,
            "at": _now(),
            "actor": entry["actor"],
            "team": entry["team"],
            "action": entry["action"],
            "subject": entry["subject"],
            "spec_sha256": entry.get("spec_sha256"),
            "params": json.dumps(entry.get("params") or {}, sort_keys=True, separators=(",", ":")),
            "decision": entry["decision"],
            # an error quoted here may name a URL with a password
            "detail": capped(redact(entry.get("detail", ""))),
        }
        digest = record_hash(prev, fields)
        mac = self.key.sign(digest)
        conn.execute(_INSERT, {**fields, "prev_hash": prev, "hash": digest, "hmac": mac})
        return AuditRecord(**fields, prev_hash=prev, hash=digest, hmac=mac)

    def anchor_head(self, record: AuditRecord) -> None:
        """After the commit: an anchored head is always in the store. A head that fails to
        reach the anchor is covered by the next one (each head vouches for the chain below it)."""
        try:
            self.anchor.append(Head(record.seq, record.hash, record.hmac))
        except AnchorError as err:
            log.warning("audit record %d is stored but not anchored yet: %s", record.seq, err)

    def _lock(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
        # SQLite: store_engine begins every transaction IMMEDIATE, which takes the
        # write lock before the tail is read, so two appenders cannot both extend it.

    def records(self, subject: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        with reading(self.engine) as conn:
            query = sa.select(*_columns(conn)).order_by(audit_table.c.seq)
            if subject is not None:
                query = query.where(audit_table.c.subject == subject)
            if limit is not None:
                query = query.limit(limit)
            return [AuditRecord(**row._asdict()) for row in conn.execute(query)]

    def verify(self) -> ChainReport:
        return verify_chain(self.engine, self.anchor, self.key, self.missing_key)


def _columns(conn: Connection) -> list[sa.Column[Any]]:
    """The table's columns as this store has them (a trail not migrated yet has no `hmac`)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(TABLE)}
    return [c for c in audit_table.c if c.name in present]


def _wrong_key(key: AuditKey, genesis: Genesis, location: str) -> str:
    return (
        f"the audit key ({key.source}, id {key.id}) is not the key this trail was started with "
        f"(id {genesis.key_id}, in the anchor {location})"
    )


def verify_chain(
    engine: Engine, anchor: Anchor, key: AuditKey | None, missing_key: str = "no audit key"
) -> ChainReport:
    """Read the anchor, then walk the store from the genesis hash.

    The anchor is read first: every head in it was committed to the store before it was
    written, so a store read afterwards holds at least that head, even while writers append.
    """
    try:
        state = anchor.read()
    except AnchorError as err:
        return ChainReport(0, False, problem=f"cannot read the anchor: {err}")
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(TABLE):
                return ChainReport(
                    0,
                    False,
                    problem=(
                        f"the store has no audit table ({TABLE} was dropped, or the store was "
                        "wiped or replaced)"
                    ),
                )
            return _walk(conn, state, anchor.location, key, missing_key)
    except sa.exc.SQLAlchemyError as err:
        message = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        return ChainReport(0, False, problem=f"cannot read the store: {message}")


def _walk(
    conn: Connection, state: AnchorState, location: str, key: AuditKey | None, missing_key: str
) -> ChainReport:
    count = conn.execute(sa.select(sa.func.count()).select_from(audit_table)).scalar_one()
    if not state.exists:
        return ChainReport(
            count,
            False,
            problem=(
                f"the anchor {location} does not exist: the end of the chain cannot be proven "
                f"({count} records in the store)"
            ),
        )
    if state.problem:
        return ChainReport(count, False, problem=state.problem)
    genesis: Genesis | None = state.genesis
    if genesis is None:
        return ChainReport(
            count,
            False,
            problem=(
                f"the anchor {location} has no genesis record: it was deleted and started again, "
                "or replaced"
            ),
        )
    if key is None:
        return ChainReport(count, False, problem=f"cannot check the records' HMACs: {missing_key}")
    if genesis.key_id != key.id:
        return ChainReport(count, False, problem=_wrong_key(key, genesis, location))
    head: Head | None = state.head
    columns = _columns(conn)
    prev = GENESIS
    expected_seq = 1
    seen: dict[int, tuple[str, str | None]] = {}
    for row in conn.execute(sa.select(*columns).order_by(audit_table.c.seq)):
        data = row._asdict()
        seq = data["seq"]
        if seq != expected_seq:
            return ChainReport(expected_seq, False, seq, f"record {expected_seq} is missing")
        if data["prev_hash"] != prev:
            return ChainReport(seq, False, seq, "does not follow the previous record")
        if record_hash(prev, _hashed_fields(data)) != data["hash"]:
            return ChainReport(seq, False, seq, "its content was changed after it was written")
        mac = data.get("hmac")
        if mac is None:
            if seq > genesis.seq:
                return ChainReport(
                    seq,
                    False,
                    seq,
                    "it has no HMAC (written without the audit key, or its HMAC was removed)",
                )
        elif not key.signed(data["hash"], mac):
            return ChainReport(
                seq,
                False,
                seq,
                "its HMAC does not match: the record was rewritten (and re-hashed) without the "
                "audit key",
            )
        if seq in (genesis.seq, head.seq if head else -1):
            seen[seq] = (data["hash"], mac)
        prev = data["hash"]
        expected_seq += 1
    last = expected_seq - 1
    anchored = max(genesis.seq, head.seq if head else 0)
    if last < anchored:
        gone = anchored - last
        where = "holds no records" if last == 0 else f"ends at record {last}"
        return ChainReport(
            last,
            False,
            problem=(
                f"truncated: the store {where} but the anchor holds record {anchored} ({gone} "
                f"record{'s' if gone != 1 else ''} deleted from the end, or the store was wiped)"
            ),
            anchored_seq=anchored,
        )
    if genesis.seq and seen.get(genesis.seq, ("", None))[0] != genesis.hash:
        return ChainReport(
            last,
            False,
            genesis.seq,
            "it is not the record the anchor's genesis holds (the store was rewritten)",
        )
    if head is not None and seen.get(head.seq) != (head.hash, head.hmac):
        return ChainReport(
            last,
            False,
            head.seq,
            "it is not the record the anchor holds (the store was rewritten from here on)",
        )
    notes = []
    if genesis.seq:
        notes.append(f"records 1-{genesis.seq} predate the audit key (hash chain only)")
    if last > anchored:
        notes.append(
            f"the last {last - anchored} not anchored yet (a writer is appending, or stopped "
            "before anchoring)"
        )
    return ChainReport(last, True, anchored_seq=anchored, note="; ".join(notes) or None)
