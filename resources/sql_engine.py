"""DuckDB as the local SQL engine for trino_sql / spark_sql nodes.

Nodes never share state through the engine, so a step can run in any process (or be
retried) and see the same thing. A single SELECT over small inputs runs on a cursor of one
sandboxed in-memory database per process, with its inputs registered on that cursor only (a
SELECT creates nothing, and a cursor's views go with it); anything else, or inputs that
DuckDB should scan itself, gets a database of its own: opening one costs ~20-25 ms of
DuckDB's start-up (measured on 2 cores), which was a tenth of a 10-node no-op run. Upstream
tables arrive as Arrow tables and are registered as views without copying; values are bound
as DuckDB `$name` parameters, never formatted into the SQL text.

Sandboxed: a node's SQL sees its input views and nothing of the machine. The
connection is opened with external access off (no file, URL, COPY TO, ATTACH of a
file, Python replacement scan or extension directory), extension autoinstall and
autoload off, and the configuration locked, all at connect time so no statement can
turn them back on (`SANDBOX`). Errors are one line, and a refused file access says so
without echoing anything (`_one_line`).
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
from dagster import ConfigurableResource
from pydantic import Field


class SqlQueryError(Exception):
    """The engine rejected a query; the message is one line of DuckDB's (made safe)."""


# Applied when the connection is opened; `lock_configuration` last in effect: after it no
# SET/RESET/PRAGMA can change any setting (DuckDB: "the configuration has been locked").
SANDBOX: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


@dataclass(frozen=True)
class ParquetView:
    """An input DuckDB reads straight from the Parquet data files of one Iceberg snapshot
    (projection and filters pushed into the scan), instead of an Arrow table read first."""

    paths: tuple[str, ...]
    # the columns the node sees (the snapshot's, without the partition column)
    columns: tuple[str, ...]
    # the session partitions to read (None: the whole table)
    partition_keys: tuple[str, ...] | None = None
    partition_column: str = "partition_key"
    # the files' total size (Iceberg's file_size_in_bytes); 0: unknown, scanned by DuckDB
    size_bytes: int = 0

    def small(self) -> bool:
        return 0 < self.size_bytes <= SMALL_INPUT_BYTES

    def to_arrow(self) -> pa.Table:
        """The view's rows read here with pyarrow (same files, columns and partitions)."""
        data = pads.dataset(list(self.paths), format="parquet")
        where = None
        if self.partition_keys is not None:
            where = pads.field(self.partition_column).isin(list(self.partition_keys))
        return data.to_table(columns=list(self.columns), filter=where)


# Inputs up to this size are read into Arrow and queried on the process's shared database;
# above it DuckDB's own parallel Parquet scan (projection and filters pushed down) is worth
# a database of its own (bench/sql_pinned.py reads 5M rows that way).
SMALL_INPUT_BYTES = 8 * 1024 * 1024


class DuckDBEngine(ConfigurableResource):
    """Runs one DuckDB-dialect query over Arrow views and returns an Arrow table.

    `files` views read Parquet files the sandbox allows by exact path (DuckDB's
    `allowed_paths`, set before external access is turned off and the configuration locked):
    those files and nothing else. A statement that is not a single SELECT (by DuckDB's own
    parser) is then refused outright, so nothing can write to an allowed path.
    """

    threads: int | None = Field(
        default=None, ge=1, description="DuckDB worker threads (None: all cores)."
    )
    memory_limit: str | None = Field(
        default=None,
        description="DuckDB memory limit, e.g. '4GB' (None: DuckDB's default, 80% of RAM).",
    )

    def query(
        self,
        sql: str,
        views: Mapping[str, pa.Table] | None = None,
        parameters: Mapping[str, Any] | None = None,
        files: Mapping[str, ParquetView] | None = None,
    ) -> pa.Table:
        """Run `sql` (one statement) with `views` registered and `$name` parameters bound."""
        allowed = sorted({p for view in (files or {}).values() for p in view.paths})
        # With files allowed, the sandbox's last two settings come after `allowed_paths`.
        config: dict[str, Any] = {
            k: v
            for k, v in SANDBOX.items()
            if not allowed or k not in ("enable_external_access", "lock_configuration")
        }
        if self.threads is not None:
            config["threads"] = self.threads
        if self.memory_limit is not None:
            config["memory_limit"] = self.memory_limit
        try:
            if all(view.small() for view in (files or {}).values()) and _is_one_select(sql):
                arrow = {name: view.to_arrow() for name, view in (files or {}).items()}
                with self._shared().cursor() as cur:
                    for name, table in {**arrow, **(views or {})}.items():
                        cur.register(name, table)
                    return cur.sql(sql, params=dict(parameters or {})).to_arrow_table()
            if allowed:
                _one_select(sql)
            with duckdb.connect(":memory:", config=config) as con:
                if allowed:
                    con.execute("SET allowed_paths = ?", [allowed])
                    con.execute("SET enable_external_access = false")
                    con.execute("SET lock_configuration = true")
                for name, view in (files or {}).items():
                    _parquet_view(con, name, view)
                for name, table in (views or {}).items():
                    con.register(name, table)
                relation = con.sql(sql, params=dict(parameters or {}))
                if relation is None:  # a statement that returns nothing
                    return pa.table({})
                return relation.to_arrow_table()
        except duckdb.Error as err:
            raise SqlQueryError(_one_line(err)) from None

    def _shared(self) -> duckdb.DuckDBPyConnection:
        """This process's sandboxed database for these settings (a forked process opens its
        own: DuckDB's threads do not survive a fork)."""
        key = (os.getpid(), self.threads, self.memory_limit)
        with _SHARED_LOCK:
            con = _SHARED.get(key)
            if con is None:
                config = dict(SANDBOX)
                if self.threads is not None:
                    config["threads"] = self.threads
                if self.memory_limit is not None:
                    config["memory_limit"] = self.memory_limit
                con = _SHARED[key] = duckdb.connect(":memory:", config=config)
            return con


_SHARED: dict[tuple[int, int | None, str | None], duckdb.DuckDBPyConnection] = {}
_SHARED_LOCK = threading.Lock()


@atexit.register
def _close_shared() -> None:
    """Closed before the interpreter tears DuckDB's bindings down: a connection still alive
    then makes nanobind print a "leaked instances" block at the exit of every step process."""
    with _SHARED_LOCK:
        for con in _SHARED.values():
            con.close()
        _SHARED.clear()


def _is_one_select(sql: str) -> bool:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return False  # the query's own database reports the syntax error
    return len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT


def _one_select(sql: str) -> None:
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise SqlQueryError("only one SELECT runs where input files are readable")


def _parquet_view(con: duckdb.DuckDBPyConnection, name: str, view: ParquetView) -> None:
    """`name` as a lazy relation over the files: built with DuckDB's relation API, so no path,
    key or column name is ever formatted into SQL text."""
    relation = con.read_parquet(list(view.paths), union_by_name=True)
    if view.partition_keys is not None:
        column = duckdb.ColumnExpression(view.partition_column)
        keys = [duckdb.ConstantExpression(k) for k in view.partition_keys]
        relation = relation.filter(column.isin(*keys))
    relation = relation.select(*[duckdb.ColumnExpression(c) for c in view.columns])
    relation.create_view(name)


# What the sandbox refuses, said as what the node may do instead (the originals name the
# path or setting the query tried, which is the node's own text, but say nothing useful).
_FILES = (
    "reading or writing files or URLs is not allowed in a SQL node "
    "(read_text, read_csv, COPY, ATTACH, EXPORT...): a query reads only its input views"
)
_REFUSALS = (
    ("file system operations are disabled", _FILES),
    ("external extensions is disabled", "loading DuckDB extensions is not allowed in a SQL node"),
    ("extension autoloading is disabled", "loading DuckDB extensions is not allowed in a SQL node"),
    ("configuration has been locked", "changing DuckDB settings is not allowed in a SQL node"),
)
_MAX_LINE = 300


def _one_line(err: duckdb.Error) -> str:
    """DuckDB messages run over several lines (hints, a caret, a `LINE 1: <the text>` echo); the
    first says what is wrong. A sandbox refusal becomes one fixed line."""
    message = str(err)
    for marker, refusal in _REFUSALS:
        if marker in message:
            kind = message.split(":", 1)[0] if ":" in message else "Error"
            return f"{kind}: {refusal}"
    for line in message.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
    return message.strip()[:_MAX_LINE] or "unknown error"


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')


def without_quoted_text(line: str) -> str:
    """An engine error with the quoted fragments blanked (`at or near "..."`): for SQL read
    from a file, which the message must not echo."""
    return _QUOTED.sub('"..."', line)
