"""A Trino coordinator on loopback that answers as Trino's Iceberg connector would.

No Trino server runs here, so this plays one at the protocol level (POST /v1/statement, the
JSON the `trino` client reads) over a real pyiceberg catalog: it records every statement the
client sends, then runs it the way the connector does for what SQL nodes send:

- `EXECUTE IMMEDIATE '<sql>' USING <values>`: the values are bound into the statement's `?`
  markers in order (what the coordinator does);
- a query's tables are read at the snapshot `FOR VERSION AS OF` names (a bare table name at its
  current snapshot), and the query runs on DuckDB (transpiled by sqlglot);
- `CREATE OR REPLACE TABLE t AS q` replaces the table in one commit; `DELETE FROM t WHERE
  partition_key = 'k'` followed by `INSERT INTO t q` replaces partition k, committed at the
  INSERT (the connector commits twice; what the table holds afterwards is the same);
  `CREATE TABLE IF NOT EXISTS ... WITH NO DATA` creates nothing until the first INSERT;
- every commit's snapshot summary carries `trino_query_id`, as the connector's do, and
  `SELECT snapshot_id FROM "t$snapshots" WHERE summary['trino_query_id'] = ?` finds it;
- anything else fails with a Trino user error, so an unexpected statement is seen.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import duckdb
import pyarrow as pa
import sqlglot
from pyiceberg.catalog import Catalog
from sqlglot import exp

from resources.iceberg_tables import PARTITION_COLUMN, read_table, write_table

_EXECUTE = re.compile(
    r"^EXECUTE IMMEDIATE '(?P<sql>(?:[^']|'')*)'(?: USING (?P<using>.*))?$", re.DOTALL
)
_NO_DATA = re.compile(r"\s+WITH NO DATA\s*$", re.IGNORECASE)


@dataclass
class Received:
    """One statement as it arrived, and as the coordinator ran it (values bound)."""

    body: str
    sql: str
    values: list[Any]
    bound: str
    query_id: str
    headers: dict[str, str] = field(default_factory=dict)


class StubTrino:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.received: list[Received] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- protocol ------------------------------------------------------------------------------

    def answer(self, body: str, headers: dict[str, str]) -> dict[str, Any]:
        query_id = f"20261207_000000_{next(self._ids):05d}_stub"
        sql, values = _unwrap(body)
        try:
            tree = cast(exp.Expression, sqlglot.parse_one(_NO_DATA.sub("", sql), read="trino"))
            bound = _bind(tree, values)
            record = Received(body, sql, values, bound.sql("trino"), query_id, headers)
            with self._lock:
                self.received.append(record)
                columns, rows = self._run(bound, query_id, no_data=bool(_NO_DATA.search(sql)))
        except Exception as err:  # noqa: BLE001 - every failure becomes Trino's error reply
            return _error(query_id, f"{type(err).__name__}: {err}".splitlines()[0])
        return {
            "id": query_id,
            "infoUri": "http://127.0.0.1/ui/query.html",
            "columns": [_column(n, t) for n, t in columns],
            "data": rows,
            "stats": {"state": "FINISHED"},
        }

    # -- the connector -------------------------------------------------------------------------

    def _run(
        self, tree: exp.Expression, query_id: str, no_data: bool
    ) -> tuple[list[tuple[str, str]], list[list[Any]]]:
        props = {"trino_query_id": query_id}
        if isinstance(tree, exp.Create):
            target = _identifier(tree.this)
            if no_data and tree.args.get("exists"):
                return [("rows", "bigint")], [[0]]
            if not tree.args.get("replace"):
                raise ValueError(
                    "only CREATE OR REPLACE TABLE ... AS and IF NOT EXISTS ... WITH NO DATA"
                )
            data = self._query(tree.expression)
            write_table(self.catalog, target, data, None, props)
            return [("rows", "bigint")], [[data.num_rows]]
        if isinstance(tree, exp.Delete):
            return [("rows", "bigint")], [[0]]  # committed with the INSERT that follows
        if isinstance(tree, exp.Insert):
            target = _identifier(tree.this)
            data = self._query(tree.expression)
            keys = set(data.column(PARTITION_COLUMN).to_pylist())
            if len(keys) != 1:
                raise ValueError(f"an INSERT writes one partition here, got {sorted(keys)}")
            key = str(keys.pop())
            write_table(self.catalog, target, data.drop_columns([PARTITION_COLUMN]), key, props)
            return [("rows", "bigint")], [[data.num_rows]]
        if isinstance(tree, exp.Select) and _snapshots_table(tree) is not None:
            return self._snapshots(tree)
        if isinstance(tree, exp.Query):
            data = self._query(tree)
            return [(n, "varchar") for n in data.column_names], [
                list(r.values()) for r in data.to_pylist()
            ]
        raise ValueError(f"not supported by the stub: {tree.key}")

    def _query(self, query: exp.Expression) -> pa.Table:
        """The query over the Iceberg tables it names, each at its pinned snapshot."""
        views: dict[str, pa.Table] = {}
        tree = query.copy()
        for n, table in enumerate(list(tree.find_all(exp.Table))):
            if not table.args.get("db"):
                continue  # a CTE or UNNEST alias
            version = table.args.get("version")
            snapshot = int(version.expression.this) if version is not None else None
            name = f"__t{n}"
            views[name] = read_table(self.catalog, _identifier(table), snapshot)
            alias = table.args.get("alias")
            table.replace(exp.table_(name, alias=alias.name if alias else table.name))
        with duckdb.connect(":memory:") as con:
            for name, data in views.items():
                con.register(name, data)
            return con.sql(tree.sql("duckdb")).to_arrow_table()

    def _snapshots(self, tree: exp.Select) -> tuple[list[tuple[str, str]], list[list[Any]]]:
        table = _snapshots_table(tree)
        assert table is not None
        wanted = tree.find(exp.EQ)
        assert wanted is not None
        query_id = wanted.expression.this
        loaded = self.catalog.load_table((table.db, table.name.removesuffix("$snapshots")))
        rows = [
            [s.snapshot_id]
            for s in loaded.snapshots()
            if s.summary is not None and s.summary.get("trino_query_id") == query_id
        ]
        return [("snapshot_id", "bigint")], rows


def _snapshots_table(tree: exp.Expression) -> exp.Table | None:
    table = tree.find(exp.Table)
    return table if table is not None and table.name.endswith("$snapshots") else None


def _identifier(table: exp.Expression) -> tuple[str, str]:
    assert isinstance(table, exp.Table) and table.db, f"not a qualified table: {table}"
    return table.db, table.name


def _unwrap(body: str) -> tuple[str, list[Any]]:
    """The statement and the values of `EXECUTE IMMEDIATE '...' USING ...` (or plain SQL)."""
    match = _EXECUTE.match(body.strip())
    if match is None:
        return body, []
    sql = match.group("sql").replace("''", "'")
    using = match.group("using")
    if not using:
        return sql, []
    select = sqlglot.parse_one(f"SELECT {using}", read="trino")
    assert isinstance(select, exp.Select)
    return sql, list(select.expressions)


def _bind(tree: exp.Expression, values: list[Any]) -> exp.Expression:
    """Each `?` replaced by its value, in the order they appear (what the coordinator does)."""
    queue = iter(values)

    def _value(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and not node.this:
            return next(queue).copy()
        return node

    return tree.transform(_value)


def _column(name: str, trino_type: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": trino_type,
        "typeSignature": {"rawType": trino_type, "arguments": []},
    }


def _error(query_id: str, message: str) -> dict[str, Any]:
    return {
        "id": query_id,
        "infoUri": "http://127.0.0.1/ui/query.html",
        "stats": {"state": "FAILED"},
        "error": {
            "message": message,
            "errorCode": 1,
            "errorName": "GENERIC_USER_ERROR",
            "errorType": "USER_ERROR",
            "failureInfo": {"type": "io.trino.spi.TrinoException", "message": message, "stack": []},
        },
    }


@contextmanager
def stub_trino(catalog: Catalog) -> Iterator[tuple[int, StubTrino]]:
    """(port, stub) of a coordinator on 127.0.0.1 over `catalog`, for the block's duration."""
    stub = StubTrino(catalog)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            data = json.dumps(stub.answer(body, dict(self.headers)), default=str).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, stub
    finally:
        server.shutdown()
        server.server_close()
