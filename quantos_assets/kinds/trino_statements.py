"""The statements a SQL node sends to Trino when Trino runs it where the data lives.

In staging/prod with a Trino coordinator the step moves no rows: each input is an Iceberg
table pinned at the snapshot its upstream recorded (`FOR VERSION AS OF`), each out is written
by Trino itself (CREATE OR REPLACE TABLE ... AS, or, for a session partition, DELETE of that
partition and INSERT), and a later out's query sees the earlier outs pinned at the snapshots
just written. The node's own text is parsed in its dialect (Trino or Spark SQL) and written
as Trino SQL by sqlglot, never through DuckDB's dialect.

What a query may read: its inputs and the outs before it, by their names. Any other table
(a bare name Trino would resolve in the session schema, a qualified name, a TABLE(...)
function such as the Iceberg connector's table_changes) is refused before anything is sent:
a node sees what its spec says it reads, here as on DuckDB.

Values: `:name` parameters and partition keys are bound (`?` markers, sent by the client as
EXECUTE IMMEDIATE ... USING); only snapshot ids, which are the catalog's integers, and
identifiers quoted by sqlglot are part of the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from resources.iceberg_tables import PARTITION_COLUMN

_MARKER = "__quantos_param_{}__"
_MARKER_RE = re.compile(r'"?__quantos_param_(\d+)__"?')


class StatementError(ValueError):
    """The node's query cannot be sent as asked (a table it may not read)."""


@dataclass(frozen=True)
class Pin:
    """Where one name a query reads resolves: an Iceberg table at a snapshot."""

    namespace: str
    name: str
    # None: unknown yet (an explain without a catalog), else the snapshot to read
    snapshot_id: int | None
    # The session partitions to read (None: the whole table)
    partition_keys: tuple[str, ...] | None = None
    # The table's columns at that snapshot, when known: a partitioned table is read without its
    # partition column (as on DuckDB, a SQL node never sees the platform's bookkeeping)
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Statement:
    """One statement as the client sends it: Trino SQL with `?` markers and their values."""

    sql: str
    values: tuple[Any, ...]
    # what it does, for logs and `quantos explain`
    purpose: str

    def shown(self) -> str:
        """The statement with its bound values listed after it, for an operator to read."""
        if not self.values:
            return f"-- {self.purpose}\n{self.sql};"
        listed = ", ".join(repr(v) for v in self.values)
        return f"-- {self.purpose} (bound: {listed})\n{self.sql};"


@dataclass(frozen=True)
class Target:
    """The Iceberg table an out is written to (catalog as Trino names it)."""

    catalog: str
    namespace: str
    name: str

    def table(self) -> exp.Table:
        return exp.table_(self.name, db=self.namespace, catalog=self.catalog, quoted=True)


def pin_tables(
    query: exp.Expression,
    pins: Mapping[str, Pin],
    catalog: str,
    label: str,
    out: str,
    quiet: bool = False,
) -> exp.Expression:
    """`query` with every table it reads replaced by its pinned Iceberg table; StatementError
    naming the first table that is neither an input nor an earlier out (`quiet`: SQL read from a
    file, whose text an error does not quote: the table is not named)."""
    ctes = {cte.alias_or_name for cte in query.find_all(exp.CTE)}
    tree = query.copy()
    for table in list(tree.find_all(exp.Table)):
        if not table.name or isinstance(table.this, exp.Func):
            # TABLE(...) functions read what they are given (table_changes, system.query...):
            # another team's table as easily as one's own. UNNEST is no table and passes.
            raise StatementError(
                f"{label}: out '{out}' calls a table function (no files, URLs or other tables): "
                "a SQL node reads only its ins and the outs before it"
            )
        bare = not table.args.get("db") and not table.args.get("catalog")
        if bare and table.name in ctes:
            continue
        pin = pins.get(table.name) if bare else None
        if pin is None:
            named = "" if quiet else f" {table.sql(dialect='trino')!r}"
            raise StatementError(
                f"{label}: out '{out}' reads table{named}, which is not one of its inputs "
                f"({', '.join(sorted(pins)) or 'none'}); a SQL node reads only its ins and the "
                "outs before it"
            )
        alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
        table.replace(_pinned(pin, catalog, alias))
    return tree


def _pinned(pin: Pin, catalog: str, alias: exp.TableAlias) -> exp.Expression:
    source = exp.table_(pin.name, db=pin.namespace, catalog=catalog, quoted=True)
    if pin.snapshot_id is not None:
        source.set(
            "version",
            exp.Version(
                this="VERSION", kind="AS OF", expression=exp.Literal.number(pin.snapshot_id)
            ),
        )
    partitioned = pin.partition_keys is not None or (
        pin.columns is not None and PARTITION_COLUMN in pin.columns
    )
    if not partitioned:
        source.set("alias", alias)
        return source
    columns: list[exp.Expression] = (
        [exp.column(c, quoted=True) for c in pin.columns if c != PARTITION_COLUMN]
        if pin.columns is not None
        else [exp.Star()]
    )
    select = exp.select(*columns).from_(source)
    if pin.partition_keys is not None:
        keys = [exp.Placeholder(this=_bound(k)) for k in pin.partition_keys]
        select = select.where(exp.column(PARTITION_COLUMN).isin(*keys))
    return exp.Subquery(this=select, alias=alias)


# Partition keys ride as placeholders named by their value, bound like parameters.
_KEY_PREFIX = "__quantos_key__"


def _bound(key: str) -> str:
    return f"{_KEY_PREFIX}{key}"


def write_statements(
    query: exp.Expression,
    target: Target,
    session: str | None,
    parameters: Mapping[str, Any],
) -> list[Statement]:
    """The statements that write one out: the whole table (CREATE OR REPLACE ... AS, a new
    snapshot; earlier ones stay for whatever pins them), or one session partition (the table
    created empty when missing, the partition deleted, the session's rows inserted)."""
    table = target.table()
    if session is None:
        create = exp.Create(this=table, kind="TABLE", expression=query, replace=True)
        return [_statement(create, parameters, f"write {target.namespace}.{target.name}")]
    rows = exp.select(
        exp.Star(), exp.alias_(exp.Placeholder(this=_bound(session)), PARTITION_COLUMN)
    ).from_(exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier("q"))))
    empty = exp.Create(
        this=table,
        kind="TABLE",
        exists=True,
        expression=rows,
        properties=exp.Properties(
            expressions=[
                exp.Property(
                    this=exp.var("partitioning"),
                    value=exp.Array(expressions=[exp.Literal.string(PARTITION_COLUMN)]),
                )
            ]
        ),
    )
    where = f"{target.namespace}.{target.name}[{session}]"
    return [
        _statement(empty, parameters, f"create {target.namespace}.{target.name} if missing", True),
        _statement(
            exp.delete(
                table, where=exp.column(PARTITION_COLUMN).eq(exp.Placeholder(this=_bound(session)))
            ),
            parameters,
            f"clear {where}",
        ),
        _statement(exp.insert(rows, table), parameters, f"write {where}"),
    ]


def snapshot_lookup(target: Target, query_id: str) -> Statement:
    """The snapshot a write committed, found by the query id Trino's Iceberg connector records
    in every snapshot's summary (`trino_query_id`): another writer's commit to the same table
    in between cannot be mistaken for ours. Metadata only, never the out's rows."""
    snapshots = exp.table_(
        f"{target.name}$snapshots", db=target.namespace, catalog=target.catalog, quoted=True
    )
    summary = exp.Bracket(
        this=exp.column("summary"), expressions=[exp.Literal.string("trino_query_id")]
    )
    select = (
        exp.select("snapshot_id")
        .from_(snapshots)
        .where(summary.eq(exp.Placeholder(this="query_id")))
    )
    return _statement(select, {"query_id": query_id}, f"snapshot of {target.name}")


def _statement(
    tree: exp.Expression, parameters: Mapping[str, Any], purpose: str, no_data: bool = False
) -> Statement:
    """Trino SQL with each named placeholder a `?` marker, and the values in marker order."""
    names: list[str] = []

    def _mark(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.this:
            names.append(str(node.this))
            return exp.column(_MARKER.format(len(names) - 1))
        return node

    sql = tree.transform(_mark).sql(dialect="trino")
    if no_data:
        sql += " WITH NO DATA"
    # The markers in the order they appear in the text, which is the order `?` binds in.
    order = [names[int(m.group(1))] for m in _MARKER_RE.finditer(sql)]
    values = [
        name[len(_KEY_PREFIX) :] if name.startswith(_KEY_PREFIX) else parameters[name]
        for name in order
    ]
    return Statement(_MARKER_RE.sub("?", sql), tuple(values), purpose)


def all_markers_bound(statements: Sequence[Statement]) -> bool:
    """Every `?` has its value (what tests and `quantos explain` check)."""
    return all(s.sql.count("?") == len(s.values) for s in statements)
