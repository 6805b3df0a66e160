"""SQLAlchemy engines for the platform's own small stores (gateway submissions, audit trail).

SQLite locally, PostgreSQL in production, from one URL. SQLite transactions begin
IMMEDIATE (the write lock up front) in WAL mode: the stores read-then-write inside
one transaction (the audit chain's tail, quota windows), and a deferred transaction
would let two writers read the same state. Reads that write nothing use `reading()`:
there the transaction begins DEFERRED, a WAL snapshot that neither takes nor waits for
the write lock (the gateway reads several times per request; every read queueing for the
one write lock behind every writer, each waiter in SQLite's sleeping busy handler, is
what made its submissions slow). The writers of one process also queue on an in-process
lock before SQLite's (`_WriterQueue`): a waiter is woken the moment the writer before it
commits, instead of polling SQLite's lock in the busy handler's sleeps (up to 100 ms each).
SQLite's lock still decides between processes (the gateway, the daemon's sensors).

The SQLite file holds every team's submissions and the audit trail, so it is readable
by its owner only (0600): created that way before SQLite opens it (SQLite gives its
-wal and -shm files the database file's mode), and tightened if an older version left
it wider.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from resources.redaction import redact

log = logging.getLogger("quantos.sql_store")
BUSY_TIMEOUT_SECONDS = 30


class StoreURLError(ValueError):
    """A store URL that is not SQLite or PostgreSQL (one-line message naming it)."""


def store_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:" and not path.startswith("file:"):
            _private_file(Path(path))
        engine = sa.create_engine(
            url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
        )
        writers = _writer_queue(path)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: no corruption on a crash; only a power cut can lose the last
            # commits. The production store is PostgreSQL.
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            if connection.get_execution_options().get(_READ_ONLY):
                connection.exec_driver_sql("BEGIN")  # DEFERRED: a snapshot, no write lock
                return
            holder = connection.connection.dbapi_connection
            writers.acquire(holder)
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writers.release(holder)
                raise

        # The next writer of this process goes once the transaction has ended in SQLite:
        # after the dialect's COMMIT or ROLLBACK (SQLAlchemy's commit event comes before it).
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def _do_commit(dbapi_connection: Any) -> None:
            try:
                commit(dbapi_connection)
            finally:
                writers.release(_raw(dbapi_connection))

        def _do_rollback(dbapi_connection: Any) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                writers.release(_raw(dbapi_connection))

        dialect.do_commit = _do_commit  # type: ignore[method-assign]
        dialect.do_rollback = _do_rollback  # type: ignore[method-assign]

        # An invalidated connection is closed, never rolled back: SQLite's lock went with it.
        @event.listens_for(engine.pool, "invalidate")
        def _invalidated(dbapi_connection: Any, _record: object, _exc: object) -> None:
            writers.release(_raw(dbapi_connection))

        return engine
    if url.startswith(("postgresql+psycopg2://", "postgresql://")):
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise StoreURLError(
        f"store URL {redact(url)!r}: expected sqlite:///PATH or postgresql+psycopg2://..."
    )


_READ_ONLY = "quantos_read_only"


class _WriterQueue:
    """The write transactions of one SQLite file in this process, one at a time.

    Only an optimisation: SQLite's own lock (BEGIN IMMEDIATE) still serializes every writer,
    of this process and of others. Without this, the writers of one process contend for
    SQLite's lock by polling it from the busy handler, which sleeps 1, 2, 5, ... 100 ms
    between tries, so under a burst most of a submission's time was spent asleep while
    the lock was free. Here a waiter blocks on a lock that wakes it when the writer before
    it has committed. A holder that never releases (a transaction leaked without COMMIT or
    ROLLBACK) costs each other writer BUSY_TIMEOUT_SECONDS, after which it goes on to
    SQLite's lock as before: never a deadlock.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._state = threading.Lock()
        self._holder: object | None = None

    def acquire(self, holder: object) -> None:
        if not self._lock.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            log.warning(
                "a writer of this process held the store for %d s; waiting on SQLite's lock",
                BUSY_TIMEOUT_SECONDS,
            )
            return
        with self._state:
            self._holder = holder

    def release(self, holder: object) -> None:
        """Let the next writer go, if `holder` (a DBAPI connection) is the one writing."""
        with self._state:
            if holder is None or self._holder is not holder:
                return
            self._holder = None
        self._lock.release()


_WRITERS: dict[str, _WriterQueue] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_queue(path: str) -> _WriterQueue:
    """One queue per database file and process, shared by every engine on that file."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return _WriterQueue()
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(os.path.realpath(path), _WriterQueue())


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's writers: a lock held by one of them at the
    fork would otherwise stay held in the child."""
    for queue in _WRITERS.values():
        queue._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _raw(connection: Any) -> object:
    """The DBAPI connection behind a pool's proxy (the dialect is handed either)."""
    return getattr(connection, "dbapi_connection", connection)


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
            raise StoreURLError(
                f"store URL {redact(url)!r}: an in-memory database has no audit trail to read"
            )
        if not Path(path).is_file():
            raise StoreMissingError(
                f"the store {path} does not exist (wiped or moved? QUANTOS_GATEWAY_DB)"
            )
        return sa.create_engine(
            f"sqlite:///file:{quote(path)}?mode=ro&uri=true",
            connect_args={"timeout": 30, "check_same_thread": False},
        )
    if url.startswith(("postgresql+psycopg2://", "postgresql://")):
        return sa.create_engine(
            url, connect_args={"options": "-c default_transaction_read_only=on"}
        )
    raise StoreURLError(
        f"store URL {redact(url)!r}: expected sqlite:///PATH or postgresql+psycopg2://..."
    )


def _private_file(path: Path) -> None:
    """Create `path` (and its folder) readable by the owner only; tighten it and its WAL
    files if they exist with wider modes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(existing.stat().st_mode)
            if mode & 0o077:
                existing.chmod(mode & 0o700)
        except FileNotFoundError:
            pass
        except PermissionError:  # another user's file: SQLite reports what it cannot do
            pass
