"""Trino for trino_sql / spark_sql nodes in staging and prod: where their statements run.

The SQL runner sends the statements kinds/trino_statements.py builds (inputs pinned, outs
written by Trino itself) on one connection per node (`session`). Statements carry `?`
markers and the values go to the `trino` client, which binds them (EXECUTE IMMEDIATE ...
USING): a value never becomes part of the SQL text we write. No result rows of an out come
back: a write returns its row count, the snapshot lookup one snapshot id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

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
