"""SQLAlchemy engines for the platform's own small stores (gateway submissions, audit trail).

SQLite locally, PostgreSQL in production, from one URL. SQLite transactions begin
IMMEDIATE (the write lock up front) in WAL mode: the stores read-then-write inside
one transaction (the audit chain's tail, quota windows), and a deferred transaction
would let two writers read the same state. Reads that write nothing use `reading()`:
there the transaction begins DEFERRED, a WAL snapshot that neither takes nor waits for
the write lock (the gateway reads several times per request; every read queueing for the
one write lock behind every writer, each waiter in SQLite's sleeping busy handler, is
what made its submissions slow).

The SQLite file holds every team's submissions and the audit trail, so it is readable
by its owner only (0600): created that way before SQLite opens it (SQLite gives its
-wal and -shm files the database file's mode), and tightened if an older version left
it wider.
"""
from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from resources.redaction import redact


class StoreURLError(ValueError):
    """A store URL that is not SQLite or PostgreSQL (one-line message naming it)."""


def store_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:" and not path.startswith("file:"):
            _private_file(Path(path))
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: no corruption on a crash; only a power cut can lose the last
            # commits. The production store is PostgreSQL.
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            if connection.get_execution_options().get(_READ_ONLY):
                connection.exec_driver_sql("BEGIN")  # DEFERRED: a snapshot, no write lock
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith(("postgresql+psycopg2://", "postgresql://")):
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise StoreURLError(f"store URL {redact(url)!r}: expected sqlite:///PATH or postgresql+psycopg2://...")


_READ_ONLY = "quantos_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only (never write through it: on SQLite its transaction is
    DEFERRED, so a read-then-write there could race another writer). On SQLite it reads a
    WAL snapshot without the write lock; elsewhere it is `engine.connect()`."""
    with engine.connect() as conn:
        conn.execution_options(**{_READ_ONLY: True})
        yield conn


class StoreMissingError(LookupError):
    """A store that is not there (one-line message naming it): readers never create one."""


def read_only_engine(url: str) -> Engine:
    """An engine that can neither create nor change the store: `quantos audit verify|show`
    must leave a missing or tampered store exactly as they found it. SQLite opens the file
    with mode=ro (a missing file is StoreMissingError, never a new empty database);
    PostgreSQL sessions are read-only transactions."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise StoreURLError(f"store URL {redact(url)!r}: an in-memory database has no audit trail to read")
        if not Path(path).is_file():
            raise StoreMissingError(f"the store {path} does not exist (wiped or moved? QUANTOS_GATEWAY_DB)")
        return sa.create_engine(
            f"sqlite:///file:{quote(path)}?mode=ro&uri=true",
            connect_args={"timeout": 30, "check_same_thread": False},
        )
    if url.startswith(("postgresql+psycopg2://", "postgresql://")):
        return sa.create_engine(url, connect_args={"options": "-c default_transaction_read_only=on"})
    raise StoreURLError(f"store URL {redact(url)!r}: expected sqlite:///PATH or postgresql+psycopg2://...")


def _private_file(path: Path) -> None:
    """Create `path` (and its folder) readable by the owner only; tighten it and its WAL
    files if they exist with wider modes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(existing.stat().st_mode)
            if mode & 0o077:
                existing.chmod(mode & 0o700)
        except FileNotFoundError:
            pass
        except PermissionError:  # another user's file: SQLite reports what it cannot do
            pass
