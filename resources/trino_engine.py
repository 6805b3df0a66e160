"""Trino as the SQL engine for trino_sql / spark_sql nodes in staging and prod.

Same `query(sql, views, parameters)` interface as DuckDBEngine, so the SQL runner does not know
which engine it talks to. It receives the runner's DuckDB-dialect SQL with `$name` parameters;
here that becomes Trino SQL with positional `?` markers and the values go to the `trino` client,
which binds them (EXECUTE IMMEDIATE ... USING): a value never becomes part of the SQL text we
write, so a parameter cannot change what the query does.

Upstream tables are not shipped: in the cluster they are Iceberg tables of the lake, which Trino
reads through its own Iceberg catalog (`catalog`/`schema` from the profile), so `views` names
must resolve there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlglot
from dagster import ConfigurableResource
from pydantic import Field
from sqlglot import exp

from resources.sql_engine import SqlQueryError

_MARKER = "__quantos_param_{}__"
_MARKER_RE = re.compile(r'"?__quantos_param_(\d+)__"?')


@dataclass(frozen=True)
class Executed:
    """One statement Trino ran: its query id (which Trino's Iceberg connector records in the
    summary of a snapshot it commits) and the rows it returned (a count, or metadata)."""

    query_id: str
    rows: list[list[Any]]
    columns: list[str]


class TrinoSession:
    """Statements run one after another on one connection (a node's writes, in order)."""

    def __init__(self, conn: Any, where: str) -> None:
        self._conn = conn
        self._where = where

    def run(self, sql: str, values: Sequence[Any] = ()) -> Executed:
        """`sql` with `?` markers; `values` bound by the client (EXECUTE IMMEDIATE ... USING)."""
        with _one_line_errors(self._where):
            cur = self._conn.cursor()
            cur.execute(sql, list(values) or None)
            rows = cur.fetchall()
            names = [d[0] for d in cur.description or []]
            return Executed(str(cur.query_id), [list(r) for r in rows], names)


class TrinoEngine(ConfigurableResource):
    """A Trino coordinator: SQL nodes' statements run on it (`session`), inside the cluster."""

    host: str
    port: int = 8080
    user: str = "quantos"
    catalog: str = "iceberg"
    schema_: str = Field(default="default", alias="schema")
    http_scheme: str = "http"
    request_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(
        default=3, ge=1, description="HTTP attempts per request (client retries)"
    )

    def query(
        self,
        sql: str,
        views: Mapping[str, pa.Table] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        """Run `sql` (DuckDB dialect, `$name` parameters) on Trino with the values bound."""
        trino_sql, values = to_trino(sql, parameters or {})
        with self.session() as trino_session:
            done = trino_session.run(trino_sql, values)
        return pa.table({n: [r[i] for r in done.rows] for i, n in enumerate(done.columns)})

    @contextmanager
    def session(self) -> Iterator[TrinoSession]:
        """One connection for a node's statements, closed after them."""
        import trino

        where = f"{self.http_scheme}://{self.host}:{self.port}"
        with trino.dbapi.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            catalog=self.catalog,
            schema=self.schema_,
            http_scheme=self.http_scheme,
            request_timeout=self.request_timeout,
            max_attempts=self.max_attempts,
            # EXECUTE IMMEDIATE: one round trip, no server-side prepared statement to leak.
            legacy_prepared_statements=False,
        ) as conn:
            yield TrinoSession(conn, where)


@contextmanager
def _one_line_errors(where: str) -> Iterator[None]:
    """The client's exceptions as one SqlQueryError line (no traceback, no echoed SQL)."""
    import requests
    import trino

    try:
        yield
    except (requests.exceptions.ConnectionError, trino.exceptions.TrinoConnectionError):
        raise SqlQueryError(f"trino at {where} is unreachable (QUANTOS_TRINO_HOST/PORT)") from None
    except trino.exceptions.TrinoQueryError as err:
        raise SqlQueryError(f"trino: {err.error_name}: {err.message}".splitlines()[0]) from None
    except trino.exceptions.HttpError as err:
        raise SqlQueryError(f"trino at {where}: {str(err).splitlines()[0]}") from None


def to_trino(sql: str, parameters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """DuckDB SQL with `$name` -> Trino SQL with `?` and the values in marker order."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    names: list[str] = []

    def _mark(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.this:
            names.append(str(node.this))
            return exp.column(_MARKER.format(len(names) - 1))
        return node

    rendered = tree.transform(_mark).sql(dialect="trino")
    missing = sorted({n for n in names if n not in parameters})
    if missing:
        raise SqlQueryError(f"no value for parameter(s) {', '.join('$' + n for n in missing)}")
    order = [int(m.group(1)) for m in _MARKER_RE.finditer(rendered)]
    return _MARKER_RE.sub("?", rendered), [parameters[names[i]] for i in order]
