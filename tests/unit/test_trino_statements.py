"""The statements the example pipelines' SQL nodes send to Trino (issue 19, point 1).

Checked with sqlglot's Trino dialect, statement by statement: every table a query reads is
qualified (catalog.schema.table) and pinned (FOR VERSION AS OF), the outs are written by
Trino (CREATE OR REPLACE / DELETE + INSERT), and the only SELECT that returns rows is the
lookup of the snapshot a write committed, which reads metadata, never an out's rows.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from quantos_assets.apps.cli.main import main
from quantos_assets.kinds.base import NodeRun
from quantos_assets.kinds.sql import SqlRunner, node_sources
from quantos_assets.kinds.trino_statements import Pin
from quantos_assets.spec.models import NodeKind
from quantos_assets.spec_rules.firm import load_spec

REPO = Path(__file__).resolve().parents[2]
OBJECTS = REPO / "deploy" / "local_objects"
SQL_NODES = [
    (path, node.id)
    for path in sorted((REPO / "specs").glob("*.yaml"))
    for node in load_spec(path).spec.nodes
    if node.kind in (NodeKind.trino_sql, NodeKind.spark_sql)
]


def _statements(path: Path, node_id: str) -> tuple[list[str], dict[str, int]]:
    spec = load_spec(path).spec
    node = spec.node(node_id)
    session = "2024-01-02" if spec.partitions is not None else None
    run = NodeRun(spec, node, path.parent, {}, session)
    read = lambda uri: (OBJECTS / uri.removeprefix("s3://")).read_text()  # noqa: E731
    sources, from_files = node_sources(run, read)
    snapshots = {name: 1000 + i for i, name in enumerate(node.ins)}
    keys = (session,) if session else None
    pins = {name: Pin(spec.pipeline_id, name, sid, keys) for name, sid in snapshots.items()}
    dialect = "trino" if node.kind is NodeKind.trino_sql else "spark"
    statements = SqlRunner(dialect).trino_statements(run, sources, pins, "iceberg", from_files)
    return [s.sql for s in statements], snapshots


@pytest.mark.parametrize(("path", "node_id"), SQL_NODES, ids=lambda v: getattr(v, "name", v))
def test_every_table_read_is_qualified_and_pinned(path: Path, node_id: str) -> None:
    statements, snapshots = _statements(path, node_id)
    spec = load_spec(path).spec
    for sql in statements:
        tree = sqlglot.parse_one(sql.removesuffix(" WITH NO DATA"), read="trino")
        written = tree.this if isinstance(tree, (exp.Create, exp.Insert, exp.Delete)) else None
        if written is None:
            # the one row-returning statement: the snapshot lookup, metadata of the out's table
            assert isinstance(tree, exp.Select), sql
            (table,) = tree.find_all(exp.Table)
            assert table.name.endswith("$snapshots") and table.catalog == "iceberg", sql
            continue
        assert isinstance(written, exp.Table) and written.db == spec.pipeline_id, sql
        query = tree.expression if not isinstance(tree, exp.Delete) else None
        ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
        for table in query.find_all(exp.Table) if query is not None else []:
            if table.name in ctes or not table.name or isinstance(table.this, exp.Func):
                continue
            assert table.catalog == "iceberg" and table.db == spec.pipeline_id, sql
            version = table.args.get("version")
            if table.name in snapshots:
                assert version is not None, sql
                assert int(version.expression.this) == snapshots[table.name], sql
        # values are bound, one per marker
        assert "?" not in sql or sql.count("?") >= 1


def test_the_examples_have_sql_nodes_to_check() -> None:
    assert {node for _path, node in SQL_NODES} >= {"fetch_data", "eod_rollup", "universe"}


def test_explain_prints_both_forms_without_a_server() -> None:
    spec = REPO / "specs" / "xs_momentum_backtest.yaml"
    text = ""
    for profile, first in (
        ("local", "-- xs_momentum_v1.universe on DuckDB in the step"),
        ("prod", "-- xs_momentum_v1.universe inside Trino (catalog iceberg)"),
    ):
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["explain", str(spec), "universe", "--profile", profile]) == 0
        text = out.getvalue()
        assert text.startswith(first), text
        assert "200000" not in text.split("\n", 2)[-1] or profile == "prod"
    assert "FOR VERSION AS OF <snapshot its upstream recorded> AS f WHERE f.adv >= ?" in text


def test_explain_refuses_what_is_not_a_sql_node(capsys: pytest.CaptureFixture[str]) -> None:
    spec = REPO / "specs" / "xs_momentum_backtest.yaml"
    assert main(["explain", str(spec), "features"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"{spec}: 'features' is a python_task node; explain shows SQL nodes"
    )
    eod = REPO / "specs" / "xs_daily_eod.yaml"
    assert main(["explain", str(eod), "eod_rollup", "--profile", "prod"]) == 1
    assert capsys.readouterr().err.strip() == f"{eod}: pipeline xs_daily_eod needs --session"


EXTERNAL = """\
version: 1
pipeline_id: bars_demo
partitions: {calendar: XNYS, start: "2024-01-02"}
external_inputs:
  bars: {table: market.bars_1m}
nodes:
  - id: prices
    kind: python_task
    params: {entrypoint: "quantos_assets.tasks.noop:one_row"}
    outs: [prices]
  - id: vwap
    kind: trino_sql
    params:
      sql: >-
        SELECT b.symbol, sum(b.px) AS px FROM bars AS b
        JOIN prices AS p ON b.symbol = p.symbol GROUP BY b.symbol
    ins: [bars, prices]
    outs: [vwap]
"""


def test_an_external_input_is_read_in_its_own_namespace_pinned(tmp_path: Path) -> None:
    """Pinned like any input, qualified by the table's own namespace, and read whole: an
    external table has no session partitions of ours (the pipeline's own input has)."""
    path = tmp_path / "bars_demo.yaml"
    path.write_text(EXTERNAL)
    spec = load_spec(path).spec
    node = spec.node("vwap")
    run = NodeRun(spec, node, tmp_path, {}, "2024-01-02")
    sources, _ = node_sources(run, lambda uri: "")
    pins = {
        "bars": Pin("market", "bars_1m", 4242, None),
        "prices": Pin("bars_demo", "prices", 1001, ("2024-01-02",)),
    }
    statements = SqlRunner("trino").trino_statements(run, sources, pins, "iceberg")
    insert = next(s.sql for s in statements if s.sql.startswith("INSERT INTO"))
    assert '"iceberg"."market"."bars_1m" FOR VERSION AS OF 4242 AS b' in insert
    assert '"iceberg"."bars_demo"."prices" FOR VERSION AS OF 1001' in insert
    # quantos explain builds the same pins from the spec
    out = io.StringIO()
    with redirect_stdout(out):
        args = ["explain", str(path), "vwap", "--profile", "prod", "--session", "2024-01-02"]
        assert main(args) == 0
    text = out.getvalue()
    assert (
        '"iceberg"."market"."bars_1m" FOR VERSION AS OF <snapshot its upstream recorded> AS b'
        in text
    )
