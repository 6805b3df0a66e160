"""trino_sql / spark_sql: the node's SQL, in its own dialect, run on the local SQL engine.

The compiler writes Trino or Spark SQL; locally it is transpiled to DuckDB
with sqlglot and run over the upstream tables, each exposed as a view named
after its `ins` name. Values come from `params.parameters` and are referenced
as `:name`; sqlglot turns them into DuckDB `$name` parameters and the engine
binds them, so a value can never change the shape of the query.

params:
    sql         one query, or a mapping out -> query for several outs
    sql_uri     instead of sql: a .sql file relative to the spec file, or an
                s3:// / file:// URI under the artifact store, or a mapping out -> either
                (`sql_sources`: nothing else is read)
    parameters  {name: value} for the `:name` placeholders; a run a data-arrival trigger
                started also binds `:arrival_uri` and `:arrival_version` (its object)

With several outs, each query also sees the outs computed before it as views. A node's
SQL is one query (SELECT, WITH, VALUES, set operations): COPY, ATTACH, SET, INSTALL...
are refused here, and the DuckDB engine refuses files, network and settings anyway.
Errors about SQL read from a sql_uri give a position, never the file's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, cast

import pyarrow as pa
import sqlglot
from dagster import AssetExecutionContext
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue, resource
from quantos_assets.kinds.sql_sources import (
    SqlUriError,
    decode_sql,
    read_spec_relative,
    store_relpath,
)
from quantos_assets.kinds.trino_statements import (
    Pin,
    Statement,
    StatementError,
    Target,
    pin_tables,
    snapshot_lookup,
    write_statements,
)
from resources.iceberg_tables import PARTITION_COLUMN
from resources.sql_engine import ParquetView, SqlQueryError, without_quoted_text
from resources.table_ref import TableRef, WrittenTable


class SqlRunner:
    """One runner per dialect; the engine is the `sql_engine` resource.

    `in_trino` (staging/prod with a Trino coordinator, `Profile.sql_in_trino`): the inputs
    arrive as TableRefs, and the node's statements run inside Trino, which writes the outs
    (kinds/trino_statements.py); otherwise the query runs on DuckDB over the input tables.
    """

    # artifact_store is only read for object-store sql_uri values.
    required_resource_keys = frozenset({"sql_engine", "artifact_store"})

    def __init__(self, dialect: str, in_trino: bool = False) -> None:
        self.dialect = dialect
        self.in_trino = in_trino

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        node = run.node
        if not node.outs:
            raise NodeRunError(
                f"{run.label}: a {node.kind.value} node needs one out for its result"
            )
        sources, from_files = node_sources(run, lambda uri: _read_uri(context, run, uri))
        parameters = node.params.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise NodeRunError(f"{run.label}: params.parameters must be a mapping name -> value")
        parameters = {**parameters, **arrival_parameters(run)}
        if self.in_trino:
            return self._run_in_trino(context, run, sources, from_files, parameters)
        views, files = local_inputs(run.inputs)
        # The same rule as inside Trino, checked the same way: a query reads its inputs and the
        # outs before it, nothing else, and is refused before the first out runs.
        readable = {name: Pin(run.spec.pipeline_id, name, None) for name in [*views, *files]}
        self._checked_before_sending(run, sources, from_files, parameters, readable)
        engine = resource(context, "sql_engine")
        results: dict[str, NodeValue] = {}
        for out in node.outs:
            duck_sql, used = self.transpile(sources[out], run.label, out, from_file=from_files)
            _check_parameters(run.label, out, used, parameters)
            try:
                bound = {name: parameters[name] for name in used}
                table = engine.query(duck_sql, views, bound, files)
            except SqlQueryError as err:
                # SQL from a file: DuckDB may quote its tokens ('at or near "..."'); say where only
                reason = without_quoted_text(str(err)) if from_files else str(err)
                raise NodeRunError(f"{run.label}: out '{out}': {reason}") from None
            results[out] = table
            views[out] = table
            # One line per out: each is an event the instance stores (issue 19 point 4).
            context.log.info(f"{run.label}: {out}: {table.num_rows} rows; on DuckDB: {duck_sql}")
        return results

    def _run_in_trino(
        self,
        context: AssetExecutionContext,
        run: NodeRun,
        sources: dict[str, str],
        from_files: bool,
        parameters: Mapping[str, Any],
    ) -> dict[str, NodeValue]:
        """Every out written by Trino from the pinned inputs; the step sees snapshot ids only."""
        node = run.node
        engine = resource(context, "sql_engine")
        pins = {name: _pin(ref) for name, ref in run.inputs.items() if isinstance(ref, TableRef)}
        trees = self._checked_before_sending(run, sources, from_files, parameters, pins)
        results: dict[str, NodeValue] = {}
        with engine.session() as trino:
            for out in node.outs:
                tree = trees[out]
                target = Target(engine.catalog, run.spec.pipeline_id, out)
                try:
                    query = pin_tables(tree, pins, engine.catalog, run.label, out)
                    statements = write_statements(query, target, run.session, parameters)
                    done = [
                        trino.run(s.sql, s.values) for s in _logged(context, run, out, statements)
                    ]
                    query_id = done[-1].query_id  # the write itself comes last
                    lookup = snapshot_lookup(target, query_id)
                    found = trino.run(lookup.sql, lookup.values).rows
                except StatementError as err:
                    raise NodeRunError(str(err)) from None
                except SqlQueryError as err:
                    reason = without_quoted_text(str(err)) if from_files else str(err)
                    raise NodeRunError(f"{run.label}: out '{out}': {reason}") from None
                if len(found) != 1:
                    raise NodeRunError(
                        f"{run.label}: out '{out}': Trino reported {len(found)} snapshots of "
                        f"query {query_id} in {run.spec.pipeline_id}.{out}; expected one",
                        retryable=True,
                    )
                snapshot_id = int(found[0][0])
                results[out] = WrittenTable(run.spec.pipeline_id, out, snapshot_id, run.session)
                keys = (run.session,) if run.session is not None else None
                named = getattr(tree, "named_selects", [])
                columns = None if "*" in named else tuple(named) or None
                pins[out] = Pin(run.spec.pipeline_id, out, snapshot_id, keys, columns)
                context.log.info(f"{run.label}: {out}: written by Trino, snapshot {snapshot_id}")
        return results

    def _checked_before_sending(
        self,
        run: NodeRun,
        sources: dict[str, str],
        from_files: bool,
        parameters: Mapping[str, Any],
        pins: Mapping[str, Pin],
    ) -> dict[str, exp.Expression]:
        """Every out's query parsed, its parameters given and its tables readable, before the
        first statement goes out: a refused out leaves no earlier out half-written."""
        trees: dict[str, exp.Expression] = {}
        readable = dict(pins)
        for out in run.node.outs:
            tree, used = self.parse(sources[out], run.label, out, from_file=from_files)
            _check_parameters(run.label, out, used, parameters)
            try:
                pin_tables(tree, readable, "catalog", run.label, out, quiet=from_files)
            except StatementError as err:
                raise NodeRunError(str(err)) from None
            readable[out] = Pin(run.spec.pipeline_id, out, None)
            trees[out] = tree
        return trees

    def transpile(
        self, sql: str, label: str, out: str, from_file: bool = False
    ) -> tuple[str, set[str]]:
        """The DuckDB form of one query and the names of the parameters it uses. `from_file`:
        the text came from a sql_uri, so errors cite a position, never the text."""
        tree, used = self.parse(sql, label, out, from_file)
        try:
            duck_sql = tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
        except SqlglotError as err:
            raise NodeRunError(
                f"{label}: out '{out}' cannot run on DuckDB: {_first_line(err)}"
            ) from None
        return duck_sql, used

    def parse(
        self, sql: str, label: str, out: str, from_file: bool = False
    ) -> tuple[exp.Expression, set[str]]:
        """One query in the node's dialect, and the names of the parameters it uses."""
        try:
            statements = [s for s in sqlglot.parse(sql, read=self.dialect) if s is not None]
        except SqlglotError as err:
            reason = _position(err) if from_file else _first_line(err)
            raise NodeRunError(
                f"{label}: out '{out}' is not valid {self.dialect} SQL: {reason}"
            ) from None
        if len(statements) != 1:
            raise NodeRunError(
                f"{label}: out '{out}' must be exactly one query, found {len(statements)} "
                "statements"
            )
        tree = statements[0]
        if not isinstance(tree, (exp.Query, exp.Values)):
            raise NodeRunError(
                f"{label}: out '{out}' must be a query (SELECT, WITH, VALUES), not "
                f"{_statement(sql)}: "
                "a SQL node reads its input views and returns rows"
            )
        placeholders = list(tree.find_all(exp.Placeholder))
        if any(not p.this for p in placeholders):
            raise NodeRunError(
                f"{label}: out '{out}' uses '?' placeholders; name them (:name) and set "
                "params.parameters"
            )
        return cast(exp.Expression, tree), {str(p.this) for p in placeholders}

    def trino_statements(
        self,
        run: NodeRun,
        sources: dict[str, str],
        inputs: Mapping[str, Pin],
        catalog: str,
        from_files: bool = False,
    ) -> list[Statement]:
        """What the node sends to Trino, for a preview (`quantos explain`): `inputs` pinned as
        given, each later out reading the earlier outs at the snapshots their writes commit
        (unknown before the run: shown without a snapshot)."""
        parameters = run.node.params.get("parameters") or {}
        pins = dict(inputs)
        trees = self._checked_before_sending(run, sources, from_files, parameters, pins)
        statements: list[Statement] = []
        for out, tree in trees.items():
            target = Target(catalog, run.spec.pipeline_id, out)
            query = pin_tables(tree, pins, catalog, run.label, out)
            statements += write_statements(query, target, run.session, parameters)
            statements.append(snapshot_lookup(target, f"<query id of the write of {out}>"))
            keys = (run.session,) if run.session is not None else None
            pins[out] = Pin(run.spec.pipeline_id, out, None, keys)
        return statements


def node_sources(run: NodeRun, read_uri: Callable[[str], str]) -> tuple[dict[str, str], bool]:
    """The SQL text of each out, from params.sql or params.sql_uri (read with `read_uri`; True:
    from files)."""
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
        raise NodeRunError(
            f"{run.label}: {len(outs)} outs need params.{key} as a mapping out -> query"
        )
    if key == "sql":
        return per_out, False
    return {out: read_uri(uri) for out, uri in per_out.items()}, True


def local_inputs(
    inputs: Mapping[str, Any],
) -> tuple[dict[str, pa.Table], dict[str, ParquetView]]:
    """The node's table inputs for DuckDB: the Parquet files of each pinned snapshot where
    DuckDB can scan them itself (it reads only the columns and partitions the query needs),
    else the rows as Arrow. The platform's partition column is bookkeeping, not data: a SQL
    node never sees it (the same on Trino, where a partitioned input is read without it)."""
    views: dict[str, pa.Table] = {}
    files: dict[str, ParquetView] = {}
    for name, value in inputs.items():
        if isinstance(value, TableRef):
            local = value.local_parquet(PARTITION_COLUMN)
            if local is not None:
                files[name] = local
                continue
            value = value.to_arrow()
        if isinstance(value, pa.Table):
            if PARTITION_COLUMN in value.column_names:
                value = value.drop_columns([PARTITION_COLUMN])
            views[name] = value
    return views, files


def arrival_parameters(run: NodeRun) -> dict[str, str]:
    """`:arrival_uri` and `:arrival_version` in a data-arrival run (bound, never formatted in)."""
    if run.arrival is None:
        return {}
    return {"arrival_uri": run.arrival.uri, "arrival_version": run.arrival.version}


def _check_parameters(label: str, out: str, used: set[str], parameters: Mapping[str, Any]) -> None:
    missing = sorted(used - set(parameters))
    if missing:
        raise NodeRunError(
            f"{label}: out '{out}' uses :{', :'.join(missing)} but params.parameters "
            "has no value for it"
        )


def _logged(
    context: AssetExecutionContext, run: NodeRun, out: str, statements: list[Statement]
) -> list[Statement]:
    for statement in statements:
        context.log.debug(f"{run.label}.{out} on Trino: {statement.shown()}")
    return statements


def _pin(ref: TableRef) -> Pin:
    """An input as Trino reads it: its table at the recorded snapshot, with its columns at that
    snapshot (metadata only) so a partitioned table is read without the partition column."""
    columns = tuple(ref.schema().names)
    return Pin(ref.namespace, ref.name, ref.snapshot_id, ref.partition_keys, columns)


def _read_uri(context: AssetExecutionContext, run: NodeRun, uri: str) -> str:
    """The spec's folder or the artifact store (sql_sources), never anywhere else."""
    try:
        if "://" not in uri:
            if run.spec_dir is None:
                raise NodeRunError(
                    f"{run.label}: sql_uri '{uri}' is relative but the spec has no file to be "
                    "relative to"
                )
            return read_spec_relative(run.spec_dir, uri)
        try:
            store = resource(context, "artifact_store")
        except Exception:  # noqa: BLE001 - not bound to this step (e.g. a test building its own asset)
            raise NodeRunError(
                f"{run.label}: sql_uri '{uri}' needs the artifact_store resource"
            ) from None
        relpath = store_relpath(store, uri)
        try:
            data = store.get(relpath)
        except Exception as err:  # noqa: BLE001 - each store backend has its own "not found"
            raise NodeRunError(
                f"{run.label}: sql_uri '{uri}' cannot be read: {_first_line(err)}"
            ) from None
        return decode_sql(uri, data)
    except SqlUriError as err:
        raise NodeRunError(f"{run.label}: sql_uri {err}") from None


def _statement(sql: str) -> str:
    """The statement's first keyword (COPY, ATTACH, SET...), for the refusal."""
    words = sql.split(None, 1)
    word = words[0].upper() if words else ""
    return f"a {word} statement" if word.isalpha() and len(word) <= 12 else "this statement"


_POSITION = re.compile(r"Line (\d+), Col: (\d+)")


def _position(err: SqlglotError) -> str:
    """Where sqlglot stopped, without the text it quotes (a sql_uri file's)."""
    match = _POSITION.search(str(err))
    return (
        f"syntax error at line {match.group(1)}, column {match.group(2)}"
        if match
        else "syntax error"
    )


def _first_line(err: Any) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
