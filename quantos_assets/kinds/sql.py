"""trino_sql / spark_sql: the node's SQL, in its own dialect, run on the local SQL engine.

The compiler writes Trino or Spark SQL; locally it is transpiled to DuckDB
with sqlglot and run over the upstream tables, each exposed as a view named
after its `ins` name. Values come from `params.parameters` and are referenced
as `:name`; sqlglot turns them into DuckDB `$name` parameters and the engine
binds them, so a value can never change the shape of the query.

params:
    sql         one query, or a mapping out -> query for several outs
    sql_uri     instead of sql: a path relative to the spec file or an
                object-store URI (s3://...), or a mapping out -> either
    parameters  {name: value} for the `:name` placeholders

With several outs, each query also sees the outs computed before it as views.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlglot
from dagster import AssetExecutionContext
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue, resource
from resources.sql_engine import SqlQueryError


class SqlRunner:
    """One runner per dialect; the engine is the `sql_engine` resource."""

    # artifact_store is only read for object-store sql_uri values.
    required_resource_keys = frozenset({"sql_engine", "artifact_store"})

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        node = run.node
        if not node.outs:
            raise NodeRunError(f"{run.label}: a {node.kind.value} node needs one out for its result")
        sources = self._sources(context, run)
        parameters = node.params.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise NodeRunError(f"{run.label}: params.parameters must be a mapping name -> value")
        views: dict[str, pa.Table] = {
            name: value for name, value in run.inputs.items() if isinstance(value, pa.Table)
        }
        engine = resource(context, "sql_engine")
        results: dict[str, NodeValue] = {}
        for out in node.outs:
            duck_sql, used = self.transpile(sources[out], run.label, out)
            missing = sorted(used - set(parameters))
            if missing:
                raise NodeRunError(
                    f"{run.label}: out '{out}' uses :{', :'.join(missing)} but params.parameters has no value for it"
                )
            context.log.debug(f"{run.label}.{out} on DuckDB: {duck_sql}")
            try:
                table = engine.query(duck_sql, views, {name: parameters[name] for name in used})
            except SqlQueryError as err:
                raise NodeRunError(f"{run.label}: out '{out}': {err}") from None
            results[out] = table
            views[out] = table
            context.log.info(f"{run.label}: {out}: {table.num_rows} rows")
        return results

    def transpile(self, sql: str, label: str, out: str) -> tuple[str, set[str]]:
        """The DuckDB form of one query and the names of the parameters it uses."""
        try:
            statements = [s for s in sqlglot.parse(sql, read=self.dialect) if s is not None]
        except SqlglotError as err:
            raise NodeRunError(f"{label}: out '{out}' is not valid {self.dialect} SQL: {_first_line(err)}") from None
        if len(statements) != 1:
            raise NodeRunError(f"{label}: out '{out}' must be exactly one query, found {len(statements)} statements")
        tree = statements[0]
        placeholders = list(tree.find_all(exp.Placeholder))
        if any(not p.this for p in placeholders):
            raise NodeRunError(f"{label}: out '{out}' uses '?' placeholders; name them (:name) and set params.parameters")
        try:
            duck_sql = tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
        except SqlglotError as err:
            raise NodeRunError(f"{label}: out '{out}' cannot run on DuckDB: {_first_line(err)}") from None
        return duck_sql, {str(p.this) for p in placeholders}

    def _sources(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, str]:
        """The SQL text of each out, from params.sql or params.sql_uri."""
        params, outs = run.node.params, run.node.outs
        if ("sql" in params) == ("sql_uri" in params):
            raise NodeRunError(f"{run.label}: set exactly one of params.sql and params.sql_uri")
        key = "sql" if "sql" in params else "sql_uri"
        value = params[key]
        if isinstance(value, Mapping):
            missing = [o for o in outs if o not in value]
            if missing or set(value) - set(outs):
                raise NodeRunError(f"{run.label}: params.{key} must map exactly the outs {outs}")
            per_out = {out: str(value[out]) for out in outs}
        elif len(outs) == 1:
            per_out = {outs[0]: str(value)}
        else:
            raise NodeRunError(f"{run.label}: {len(outs)} outs need params.{key} as a mapping out -> query")
        if key == "sql":
            return per_out
        return {out: _read_uri(context, run, uri) for out, uri in per_out.items()}


def _read_uri(context: AssetExecutionContext, run: NodeRun, uri: str) -> str:
    if "://" in uri:
        try:
            store = resource(context, "artifact_store")
        except Exception:  # noqa: BLE001 - not bound to this step (e.g. a test building its own asset)
            raise NodeRunError(f"{run.label}: sql_uri '{uri}' needs the artifact_store resource") from None
        try:
            data = store.get(uri)
        except Exception as err:  # noqa: BLE001 - each store backend has its own "not found"
            raise NodeRunError(f"{run.label}: sql_uri '{uri}' cannot be read: {_first_line(err)}") from None
        return data.decode("utf-8") if isinstance(data, bytes) else str(data)
    path = Path(uri)
    if not path.is_absolute():
        if run.spec_dir is None:
            raise NodeRunError(f"{run.label}: sql_uri '{uri}' is relative but the spec has no file to be relative to")
        path = run.spec_dir / path
    if not path.is_file():
        raise NodeRunError(f"{run.label}: sql_uri '{uri}' not found (looked at {path})")
    return path.read_text(encoding="utf-8")


def _first_line(err: Any) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
