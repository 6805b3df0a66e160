"""trino_sql / spark_sql on DuckDB: transpiled, views from ins, parameters bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import build_asset_context
from profiles import runners

from quantos_assets.kinds.base import NodeRun, NodeRunError
from quantos_assets.kinds.registry import runner_for
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from resources.artifact_store import ArtifactStore
from resources.sql_engine import DuckDBEngine, SqlQueryError

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
        return runner_for(kind, runners()).run(
            context, NodeRun(spec=spec, node=node, spec_dir=spec_dir, inputs={"bars": BARS})
        )


def test_trino_dialect_with_bound_parameter() -> None:
    sql = """
        SELECT symbol, CAST(volume AS double) / :scale AS volume_k,
               approx_percentile(close, 0.5) OVER () AS median_close
        FROM bars WHERE volume >= :min_volume ORDER BY symbol
    """
    out = run_sql(
        NodeKind.trino_sql, {"sql": sql, "parameters": {"min_volume": 1000, "scale": 1000}}
    )["universe"]
    assert isinstance(out, pa.Table)
    assert out["symbol"].to_pylist() == ["BBB", "CCC"]
    assert out["volume_k"].to_pylist() == [5.0, 90.0]


def test_spark_dialect_with_bound_parameter() -> None:
    sql = (
        "SELECT `symbol`, volume FROM bars WHERE volume < :max_volume AND symbol RLIKE '^[A-Z]+$' "
        "ORDER BY 1"
    )
    out = run_sql(NodeKind.spark_sql, {"sql": sql, "parameters": {"max_volume": 10_000}})[
        "universe"
    ]
    assert out["symbol"].to_pylist() == ["AAA", "BBB"]


def test_a_quote_in_a_value_cannot_inject() -> None:
    sql = "SELECT symbol FROM bars WHERE symbol = :symbol"
    evil = run_sql(NodeKind.trino_sql, {"sql": sql, "parameters": {"symbol": "AAA' OR '1'='1"}})[
        "universe"
    ]
    assert evil.num_rows == 0
    exact = run_sql(NodeKind.trino_sql, {"sql": sql, "parameters": {"symbol": "x' OR '1'='1"}})[
        "universe"
    ]
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
    (tmp_path / "sql" / "universe.sql").write_text(
        "SELECT symbol FROM bars WHERE close > :px ORDER BY symbol"
    )
    out = run_sql(
        NodeKind.trino_sql,
        {"sql_uri": "sql/universe.sql", "parameters": {"px": 15}},
        spec_dir=tmp_path,
    )
    assert out["universe"]["symbol"].to_pylist() == ["BBB", "CCC"]


def test_sql_uri_in_the_object_store(tmp_path: Path) -> None:
    store = ArtifactStore(root=str(tmp_path / "store"))
    uri = store.put("queries/universe.sql", b"SELECT count(*) AS n FROM bars")
    out = run_sql(NodeKind.trino_sql, {"sql_uri": uri}, store_root=tmp_path / "store")
    assert out["universe"].to_pylist() == [{"n": 4}]


def test_missing_sql_uri_names_the_uri(tmp_path: Path) -> None:
    with pytest.raises(
        NodeRunError, match=r"^kinds_sql.universe: sql_uri 'sql/nope.sql' not found"
    ):
        run_sql(NodeKind.trino_sql, {"sql_uri": "sql/nope.sql"}, spec_dir=tmp_path)
    missing = ArtifactStore(root=str(tmp_path / "store")).uri_for("queries/bt_fetch.sql")
    with pytest.raises(
        NodeRunError, match=rf"^kinds_sql.universe: sql_uri '{missing}' cannot be read"
    ):
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


# --- the sandbox (issue 16, defect 4): a query sees its input views and nothing of the machine ---
# Refused by the runner before DuckDB sees it (the same rule as inside Trino); the DuckDB
# sandbox behind it refuses the same reads (test_copy_to_and_attach...: the engine itself).
FILE_REFUSAL = (
    "kinds_sql.universe: out 'universe' calls a table function (no files, URLs or other "
    "tables): a SQL node reads only its ins and the outs before it"
)


def _refused(params: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(NodeRunError) as err:
        run_sql(NodeKind.trino_sql, params, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_reading_a_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = tmp_path / "hostname"
    secret.write_text("SECRET-HOST-CONTENT\n")
    for sql in (
        f"SELECT * FROM read_text('{secret}')",
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM read_blob('{secret}')",
        f"SELECT * FROM read_parquet('{secret}')",
    ):
        assert _refused({"sql": sql}) == FILE_REFUSAL, sql


def test_copy_to_and_attach_are_refused_and_write_nothing(tmp_path: Path) -> None:
    target = tmp_path / "written.csv"
    message = _refused({"sql": f"COPY (SELECT * FROM bars) TO '{target}'"})
    assert message == (
        "kinds_sql.universe: out 'universe' must be a query (SELECT, WITH, VALUES), not a COPY "
        "statement: a SQL node reads its input views and returns rows"
    )
    assert "not a SET statement" in _refused({"sql": "SET enable_external_access = true"})
    # and the engine itself, whatever reaches it (the runner's check aside)
    engine = DuckDBEngine()
    for sql in (
        f"COPY (SELECT 1) TO '{target}'",
        f"ATTACH '{tmp_path / 'x.db'}' AS x",
        f"EXPORT DATABASE '{tmp_path / 'export'}'",
        "INSTALL httpfs",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_text('/etc/hostname')",
    ):
        with pytest.raises(
            SqlQueryError, match="Permission Error: reading or writing files or URLs is not allowed"
        ):
            engine.query(sql)
    with pytest.raises(SqlQueryError, match="changing DuckDB settings is not allowed"):
        engine.query("SET enable_external_access = true")
    with pytest.raises(SqlQueryError, match="changing DuckDB settings is not allowed"):
        engine.query("RESET lock_configuration")
    with pytest.raises(SqlQueryError, match="loading DuckDB extensions is not allowed"):
        engine.query("LOAD httpfs")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_url_is_refused_without_any_request() -> None:
    from loopback_http import QuietHandler, serve_http

    requests: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"SELECT 1")

    with serve_http(Handler) as url:
        assert _refused({"sql": f"SELECT * FROM read_text('{url}/x')"}) == FILE_REFUSAL
        assert _refused({"sql": f"SELECT * FROM read_parquet('{url}/x.parquet')"}) == FILE_REFUSAL
    assert requests == []


def test_the_configuration_is_locked_and_arrow_views_still_work() -> None:
    engine = DuckDBEngine(threads=2)
    settings = engine.query(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'autoinstall_known_extensions', 'autoload_known_extensions', 'lock_configuration') ORDER "
        "BY name"
    ).to_pylist()
    assert settings == [
        {"name": "autoinstall_known_extensions", "value": "false"},
        {"name": "autoload_known_extensions", "value": "false"},
        {"name": "enable_external_access", "value": "false"},
        {"name": "lock_configuration", "value": "true"},
    ]
    assert engine.query("SELECT count(*) AS n FROM bars", {"bars": BARS}).to_pylist() == [{"n": 4}]


def test_sql_uri_outside_the_spec_folder_is_refused(tmp_path: Path) -> None:
    spec_dir, outside = tmp_path / "specs", tmp_path / "other"
    spec_dir.mkdir()
    outside.mkdir()
    (outside / "q.sql").write_text("SELECT 'OTHER-TEAM-SQL' AS x")
    (spec_dir / "escape.sql").symlink_to(outside / "q.sql")
    where = (
        "use a .sql file relative to the spec file, or an s3:// or file:// URI under the artifact "
        "store"
    )
    cases = {
        "/etc/passwd": f"sql_uri '/etc/passwd' is an absolute path; {where}",
        "../other/q.sql": f"sql_uri '../other/q.sql' goes up a folder ('..'); {where}",
        "escape.sql": f"sql_uri 'escape.sql' leads out of the spec's folder (a symlink?); {where}",
        "q.yaml": f"sql_uri 'q.yaml' is not a .sql file; {where}",
        "file:///etc/passwd": f"sql_uri 'file:///etc/passwd' is not a .sql file; {where}",
    }
    for uri, says in cases.items():
        message = _refused({"sql_uri": uri}, spec_dir=spec_dir, store_root=tmp_path / "store")
        assert message == f"kinds_sql.universe: {says}", message
        assert "OTHER-TEAM-SQL" not in message and "root:" not in message


def test_sql_uri_outside_the_artifact_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.sql").write_text("SELECT 'NOT-IN-THE-STORE' AS x")
    store = tmp_path / "store"
    for uri in ((tmp_path / "elsewhere.sql").as_uri(), "s3://other-bucket/q.sql"):
        message = _refused({"sql_uri": uri}, store_root=store)
        assert message.startswith(
            f"kinds_sql.universe: sql_uri '{uri}' is outside the artifact store ({store})"
        ), message


def test_errors_in_sql_from_a_file_give_a_position_not_its_text(tmp_path: Path) -> None:
    (tmp_path / "bad.sql").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "binder.sql").write_text('SELECT "SECRET_COLUMN_NAME" FROM bars')
    assert _refused({"sql_uri": "bad.sql"}, spec_dir=tmp_path) == (
        "kinds_sql.universe: out 'universe' is not valid trino SQL: syntax error at line 1, "
        "column 7"
    )
    message = _refused({"sql_uri": "binder.sql"}, spec_dir=tmp_path)
    assert (
        message.startswith("kinds_sql.universe: out 'universe': Binder Error: ")
        and "SECRET" not in message
    )


@pytest.mark.parametrize("scan", ["duckdb", "arrow"])
def test_input_files_are_readable_and_nothing_else_nor_writable(tmp_path: Path, scan: str) -> None:
    """A local SQL node scans its pinned input's Parquet files itself: DuckDB may read exactly
    those files, no other file, and (only a single SELECT running then) write none of them.
    `arrow`: a small input read here and queried on the process's shared database."""
    import pyarrow.parquet as pq

    from resources.sql_engine import ParquetView

    data = tmp_path / "data.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3], "partition_key": ["a", "a", "b"]}), str(data))
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"secret": ["SECRET-CONTENT"]}), str(other))
    size = data.stat().st_size if scan == "arrow" else 0
    view = ParquetView(paths=(str(data),), columns=("x",), partition_keys=("a",), size_bytes=size)
    assert view.small() == (scan == "arrow")
    engine = DuckDBEngine()
    result = engine.query("SELECT sum(x) AS s FROM t", files={"t": view})
    assert result.to_pylist() == [{"s": 3}]  # the partition's rows, without the key column
    with pytest.raises(SqlQueryError, match="Binder Error"):
        engine.query("SELECT partition_key FROM t", files={"t": view})
    for sql in (
        f"SELECT * FROM read_parquet('{other}')",
        "SELECT * FROM read_text('/etc/hostname')",
    ):
        with pytest.raises(SqlQueryError, match="reading or writing files or URLs is not allowed"):
            engine.query(sql, files={"t": view})
    for sql in (
        f"COPY (SELECT 9 AS x) TO '{data}' (FORMAT parquet, USE_TMP_FILE false)",
        "SELECT 1; SELECT 2",
        "SET allowed_paths = ['/etc/hostname']",
    ):
        with pytest.raises(SqlQueryError, match="only one SELECT runs where input files"):
            engine.query(sql, files={"t": view})
    assert pq.read_table(str(data)).column("x").to_pylist() == [1, 2, 3]


def test_queries_in_one_process_share_nothing() -> None:
    """Small queries share one database per process: what one query registered or created is
    gone for the next (a team's later node, or a retry, sees only its own inputs)."""
    engine = DuckDBEngine()
    assert engine.query("SELECT count(*) AS n FROM bars", {"bars": BARS}).to_pylist() == [{"n": 4}]
    with pytest.raises(SqlQueryError, match="Catalog Error"):
        engine.query("SELECT * FROM bars")
    engine.query("CREATE TABLE kept AS SELECT 'LEFT-BEHIND' AS x")
    with pytest.raises(SqlQueryError, match="Catalog Error"):
        engine.query("SELECT * FROM kept")
