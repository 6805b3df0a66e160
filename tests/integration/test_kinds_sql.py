"""trino_sql / spark_sql on DuckDB: transpiled, views from ins, parameters bound."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import build_asset_context

from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from resources.artifact_store import ArtifactStore
from resources.sql_engine import DuckDBEngine

pytestmark = pytest.mark.integration

BARS = pa.table(
    {
        "symbol": ["AAA", "BBB", "CCC", "x' OR '1'='1"],
        "volume": [100, 5_000, 90_000, 1],
        "close": [10.0, 20.0, 30.0, 1.0],
    }
)


def run_sql(
    kind: NodeKind,
    params: dict[str, Any],
    outs: list[str] | None = None,
    spec_dir: Path | None = None,
    store_root: Path | None = None,
) -> dict[str, Any]:  # the runner's tables, read as tables
    node = Node(id="universe", kind=kind, params=params, ins=["bars"], outs=outs or ["universe"])
    spec = DagSpec.model_construct(version=1, pipeline_id="kinds_sql", nodes=[node])
    resources: dict[str, Any] = {"sql_engine": DuckDBEngine(threads=2, memory_limit="1GB")}
    if store_root is not None:
        resources["artifact_store"] = ArtifactStore(root=str(store_root))
    with build_asset_context(resources=resources) as context:
        return runner_for(kind).run(context, NodeRun(spec=spec, node=node, spec_dir=spec_dir, inputs={"bars": BARS}))


def test_trino_dialect_with_bound_parameter() -> None:
    sql = """
        SELECT symbol, CAST(volume AS double) / :scale AS volume_k,
               approx_percentile(close, 0.5) OVER () AS median_close
        FROM bars WHERE volume >= :min_volume ORDER BY symbol
    """
    out = run_sql(NodeKind.trino_sql, {"sql": sql, "parameters": {"min_volume": 1000, "scale": 1000}})["universe"]
    assert isinstance(out, pa.Table)
    assert out["symbol"].to_pylist() == ["BBB", "CCC"]
    assert out["volume_k"].to_pylist() == [5.0, 90.0]


def test_spark_dialect_with_bound_parameter() -> None:
    sql = "SELECT `symbol`, volume FROM bars WHERE volume < :max_volume AND symbol RLIKE '^[A-Z]+$' ORDER BY 1"
    out = run_sql(NodeKind.spark_sql, {"sql": sql, "parameters": {"max_volume": 10_000}})["universe"]
    assert out["symbol"].to_pylist() == ["AAA", "BBB"]


def test_a_quote_in_a_value_cannot_inject() -> None:
    sql = "SELECT symbol FROM bars WHERE symbol = :symbol"
    evil = run_sql(NodeKind.trino_sql, {"sql": sql, "parameters": {"symbol": "AAA' OR '1'='1"}})["universe"]
    assert evil.num_rows == 0
    exact = run_sql(NodeKind.trino_sql, {"sql": sql, "parameters": {"symbol": "x' OR '1'='1"}})["universe"]
    assert exact["symbol"].to_pylist() == ["x' OR '1'='1"]


def test_several_outs_see_earlier_outs() -> None:
    params = {
        "sql": {
            "liquid": "SELECT * FROM bars WHERE volume >= :min_volume",
            "summary": "SELECT count(*) AS n, sum(volume) AS total FROM liquid",
        },
        "parameters": {"min_volume": 1000},
    }
    out = run_sql(NodeKind.trino_sql, params, outs=["liquid", "summary"])
    assert out["liquid"].num_rows == 2
    assert out["summary"].to_pylist() == [{"n": 2, "total": 95_000}]


def test_sql_uri_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "universe.sql").write_text("SELECT symbol FROM bars WHERE close > :px ORDER BY symbol")
    out = run_sql(NodeKind.trino_sql, {"sql_uri": "sql/universe.sql", "parameters": {"px": 15}}, spec_dir=tmp_path)
    assert out["universe"]["symbol"].to_pylist() == ["BBB", "CCC"]


def test_sql_uri_in_the_object_store(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path / "store"))
    uri = store.put("queries/universe.sql", b"SELECT count(*) AS n FROM bars")
    out = run_sql(NodeKind.trino_sql, {"sql_uri": uri}, store_root=tmp_path / "store")
    assert out["universe"].to_pylist() == [{"n": 4}]


def test_missing_sql_uri_names_the_uri(tmp_path: Path) -> None:
    with pytest.raises(NodeRunError, match=r"^kinds_sql.universe: sql_uri 'sql/nope.sql' not found"):
        run_sql(NodeKind.trino_sql, {"sql_uri": "sql/nope.sql"}, spec_dir=tmp_path)
    missing = ArtifactStore(root=str(tmp_path / "store")).uri_for("queries/bt_fetch.sql")
    with pytest.raises(NodeRunError, match=rf"^kinds_sql.universe: sql_uri '{missing}' cannot be read"):
        run_sql(NodeKind.trino_sql, {"sql_uri": missing}, store_root=tmp_path / "store")


def test_engine_error_is_one_line_with_the_label() -> None:
    with pytest.raises(NodeRunError) as err:
        run_sql(NodeKind.trino_sql, {"sql": "SELECT nope FROM bars"})
    message = str(err.value)
    assert message.startswith("kinds_sql.universe: out 'universe': Binder Error: ")
    assert "nope" in message and "\n" not in message


def test_missing_parameter_value_and_positional_placeholders() -> None:
    with pytest.raises(NodeRunError, match=r"uses :min_volume but params.parameters has no value"):
        run_sql(NodeKind.trino_sql, {"sql": "SELECT * FROM bars WHERE volume > :min_volume"})
    with pytest.raises(NodeRunError, match=r"'\?' placeholders"):
        run_sql(NodeKind.trino_sql, {"sql": "SELECT * FROM bars WHERE volume > ?"})
