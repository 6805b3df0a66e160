"""DuckDB as the local SQL engine for trino_sql / spark_sql nodes.

One in-memory connection per query: nodes never share state through the
engine, so a step can run in any process (or be retried) and see the same
thing. Upstream tables arrive as Arrow tables and are registered as views
without copying; values are bound as DuckDB `$name` parameters, never
formatted into the SQL text.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import Field


class SqlQueryError(Exception):
    """The engine rejected a query; the message is DuckDB's first line."""


class DuckDBEngine(ConfigurableResource):
    """Runs one DuckDB-dialect query over Arrow views and returns an Arrow table."""

    threads: int | None = Field(default=None, ge=1, description="DuckDB worker threads (None: all cores).")
    memory_limit: str | None = Field(
        default=None, description="DuckDB memory limit, e.g. '4GB' (None: DuckDB's default, 80% of RAM)."
    )

    def query(
        self,
        sql: str,
        views: Mapping[str, pa.Table] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        """Run `sql` (one statement) with `views` registered and `$name` parameters bound."""
        config: dict[str, Any] = {}
        if self.threads is not None:
            config["threads"] = self.threads
        if self.memory_limit is not None:
            config["memory_limit"] = self.memory_limit
        try:
            with duckdb.connect(":memory:", config=config) as con:
                for name, table in (views or {}).items():
                    con.register(name, table)
                relation = con.sql(sql, params=dict(parameters or {}))
                if relation is None:  # a statement that returns nothing
                    return pa.table({})
                return relation.to_arrow_table()
        except duckdb.Error as err:
            raise SqlQueryError(_first_line(str(err))) from None


def _first_line(message: str) -> str:
    """DuckDB messages run over several lines (hints, a caret); the first says what is wrong."""
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return message.strip() or "unknown error"
