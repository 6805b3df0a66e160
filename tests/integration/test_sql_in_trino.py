"""SQL nodes in staging/prod run inside Trino against the lake (issue 19, point 1).

The node's step moves no rows: its inputs reach it as table references, every statement it
sends names its tables qualified and pinned at the snapshots its upstreams recorded, Trino
writes the outs, and the IO manager records them from the table's metadata. A coordinator on
loopback (tests/trino_iceberg_stub.py) answers as Trino's Iceberg connector would, over the
same pyiceberg catalog the IO manager uses, so what the node wrote can be read back and
compared with the same node run locally on DuckDB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import sqlglot
from profiles import LOCAL, prod_profile
from sqlglot import exp
from trino_iceberg_stub import StubTrino, stub_trino

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec_rules.firm import load_spec_text
from resources.artifact_store import ArtifactStore
from resources.iceberg_tables import read_table, write_table
from resources.lake_io_manager import LakeIOManager
from resources.sql_engine import DuckDBEngine
from resources.trino_engine import TrinoEngine

pytestmark = pytest.mark.integration

SPEC = """
version: 1
pipeline_id: xs_sql
nodes:
  - id: load
    kind: python_task
    params: {entrypoint: "tests.integration.test_kinds_entrypoints:nothing"}
    outs: [features]
  - id: select
    kind: trino_sql
    params:
      parameters: {min_volume: 200000, note: "it's; DROP TABLE x"}
      sql:
        universe: |
          SELECT f.symbol, f.adv, percent_rank() OVER (ORDER BY f.adv) AS liquidity_pct
          FROM features AS f
          WHERE f.adv >= :min_volume AND :note <> ''
        top: SELECT symbol FROM universe WHERE liquidity_pct >= 0.5
    ins: [features]
    outs: [universe, top]
"""
PROD_TRINO = {"QUANTOS_TRINO_HOST": "127.0.0.1", "QUANTOS_TRINO_CATALOG": "iceberg"}
FEATURES = pa.table(
    {
        "symbol": ["A", "B", "C", "D", "E"],
        "adv": [100_000, 250_000, 900_000, 400_000, 2_000_000],
    }
)


def _lake(tmp_path: Path) -> LakeIOManager:
    return LakeIOManager(
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=str(tmp_path / "warehouse"),
        artifact_store=ArtifactStore(root=str(tmp_path / "artifacts")),
    )


def _run(
    text: str,
    lake: LakeIOManager,
    engine: Any,
    profile: Any,
    upstream: pa.Table,
    node: str,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """The upstream out as a plain asset of the same key (stored through the IO manager),
    then the spec's SQL node built for `profile`, in one run."""
    pipeline = build_pipeline(load_spec_text(text, "xs_sql.yaml", "yaml"), profile)
    sql_asset = next(
        a
        for a in pipeline.assets
        if isinstance(a, dg.AssetsDefinition) and a.op.name == f"xs_sql__{node}"
    )

    @dg.asset(key=["xs_sql", "features"])
    def features() -> pa.Table:
        return upstream

    return dg.materialize(
        [features, sql_asset],
        resources={
            "io_manager": lake,
            "sql_engine": engine,
            "artifact_store": lake.artifact_store,
        },
        instance=dg.DagsterInstance.ephemeral(),
        tags=tags,
    )


def _tables(statement: str) -> list[exp.Table]:
    tree = sqlglot.parse_one(statement, read="trino")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return [t for t in tree.find_all(exp.Table) if t.name not in ctes]


def _written(result: dg.ExecuteInProcessResult, out: str) -> dict[str, Any]:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["xs_sql", out])
    ]
    materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
    return {k: v.value for k, v in materialization.metadata.items()}


def test_the_node_runs_inside_trino_pinned_and_writes_its_outs(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    with stub_trino(lake.catalog()) as (port, stub):
        engine = TrinoEngine(host="127.0.0.1", port=port, catalog="iceberg", schema="default")
        result = _run(SPEC, lake, engine, prod_profile(**PROD_TRINO), FEATURES, "select")
    assert result.success
    features_snapshot = lake.catalog().load_table(("xs_sql", "features")).current_snapshot()
    assert features_snapshot is not None
    statements = [r.sql for r in stub.received]
    writes = [s for s in statements if not s.startswith("SELECT snapshot_id")]
    assert len(writes) == 2 and all(s.startswith("CREATE OR REPLACE TABLE") for s in writes)
    universe = _written(result, "universe")
    for statement in writes:
        for table in _tables(statement):
            # qualified, and pinned at the snapshot its writer recorded
            assert table.catalog == "iceberg" and table.db == "xs_sql", statement
            if table.name == "features":
                assert table.args["version"].expression.this == str(features_snapshot.snapshot_id)
            elif statement.startswith('CREATE OR REPLACE TABLE "iceberg"."xs_sql"."top"'):
                # the second query reads the first out at the snapshot just written
                assert table.name in ("top", "universe")
                if table.name == "universe":
                    assert table.args["version"].expression.this == str(universe["snapshot_id"])
    # values bound, never in the text
    assert "200000" not in writes[0] and "DROP TABLE" not in writes[0]
    assert stub.received[0].body.endswith("USING 200000,'it''s; DROP TABLE x'")
    # each out recorded as the IO manager records every table: its own snapshot, rows, schema
    for out in ("universe", "top"):
        meta = _written(result, out)
        current = lake.catalog().load_table(("xs_sql", out)).current_snapshot()
        assert current is not None and meta["snapshot_id"] == current.snapshot_id
        assert meta["rows"] == read_table(lake.catalog(), ("xs_sql", out), None).num_rows
        assert meta["storage"] == "iceberg" and meta["table"] == f"xs_sql.{out}"
    # the same node on DuckDB, locally, from the same input: the same rows
    local_lake = _lake(tmp_path / "local")
    assert _run(SPEC, local_lake, DuckDBEngine(), LOCAL, FEATURES, "select").success
    for out in ("universe", "top"):
        in_trino = read_table(lake.catalog(), ("xs_sql", out), None).sort_by("symbol")
        on_duckdb = read_table(local_lake.catalog(), ("xs_sql", out), None).sort_by("symbol")
        assert in_trino.to_pylist() == on_duckdb.to_pylist()
        assert in_trino.num_rows > 0


def test_a_table_outside_the_ins_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    text = SPEC.replace(
        "top: SELECT symbol FROM universe WHERE liquidity_pct >= 0.5",
        "top: SELECT token FROM platform.api_tokens",
    )
    lake = _lake(tmp_path)
    with stub_trino(lake.catalog()) as (port, stub):
        engine = TrinoEngine(host="127.0.0.1", port=port, catalog="iceberg")
        with pytest.raises(dg.Failure) as err:
            _run(text, lake, engine, prod_profile(**PROD_TRINO), FEATURES, "select")
    assert str(err.value.description) == (
        "xs_sql.select: out 'top' reads table 'platform.api_tokens', which is not one of its "
        "inputs (features, universe); a SQL node reads only its ins and the outs before it"
    )
    # every out is checked before the first statement: nothing reached Trino
    assert stub.received == []


PARTITIONED = """
version: 1
pipeline_id: xs_sql
partitions: {calendar: XNYS, start: "2024-01-02"}
nodes:
  - id: load
    kind: python_task
    params: {entrypoint: "tests.integration.test_kinds_entrypoints:nothing"}
    outs: [features]
  - id: rollup
    kind: trino_sql
    params:
      sql: SELECT count(*) AS symbols, sum(adv) AS adv FROM features
    ins: [features]
    outs: [summary]
"""


SESSIONS = ["2024-01-02", "2024-01-03"]


def _sessions_in_the_lake(
    lake: LakeIOManager, text: str
) -> tuple[dg.AssetsDefinition, dg.DagsterInstance, dg.AssetSpec]:
    """Two sessions of the upstream written and recorded; the rollup node built for prod with
    Trino. Returns (rollup, instance, the upstream as a partitioned source asset)."""
    catalog = lake.catalog()
    for key, rows in zip(SESSIONS, (FEATURES, FEATURES.slice(0, 2)), strict=True):
        write_table(catalog, ("xs_sql", "features"), rows, key)
    loaded = load_spec_text(text, "xs_sql.yaml", "yaml")
    pipeline = build_pipeline(loaded, prod_profile(**PROD_TRINO))
    rollup = next(
        a
        for a in pipeline.assets
        if isinstance(a, dg.AssetsDefinition) and a.op.name == "xs_sql__rollup"
    )
    instance = dg.DagsterInstance.ephemeral()
    partitions = rollup.partitions_def
    assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name
    instance.add_dynamic_partitions(partitions.name, SESSIONS)
    snapshot = catalog.load_table(("xs_sql", "features")).current_snapshot()
    assert snapshot is not None
    for key in SESSIONS:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=["xs_sql", "features"],
                partition=key,
                metadata={"snapshot_id": snapshot.snapshot_id, "storage": "iceberg"},
            )
        )
    return rollup, instance, dg.AssetSpec(["xs_sql", "features"], partitions_def=partitions)


def test_a_session_partition_is_replaced_by_trino(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    catalog = lake.catalog()
    rollup, instance, upstream = _sessions_in_the_lake(lake, PARTITIONED)
    with stub_trino(catalog) as (port, stub):
        engine = TrinoEngine(host="127.0.0.1", port=port, catalog="iceberg")
        for key in ("2024-01-03", "2024-01-03", "2024-01-02"):  # one session written twice
            result = dg.materialize(
                [rollup, upstream],
                partition_key=key,
                resources={
                    "io_manager": lake,
                    "sql_engine": engine,
                    "artifact_store": lake.artifact_store,
                },
                instance=instance,
            )
            assert result.success
    sent = [r.sql for r in stub.received]
    clear = 'DELETE FROM "iceberg"."xs_sql"."summary" WHERE partition_key = ?'
    assert sum(s == clear for s in sent) == 3
    inserts = [r for r in stub.received if r.sql.startswith("INSERT INTO")]
    # the input is read as the session's partition only, without the partition column
    assert all("WHERE partition_key IN (?)" in r.sql for r in inserts)
    summary = read_table(catalog, ("xs_sql", "summary"), None).sort_by("partition_key")
    assert summary.to_pylist() == [
        {"symbols": 5, "adv": 3_650_000, "partition_key": "2024-01-02"},
        {"symbols": 2, "adv": 350_000, "partition_key": "2024-01-03"},
    ]


def test_the_stub_is_a_real_peer_of_the_client(tmp_path: Path) -> None:
    """What the stub cannot run comes back as Trino's own error, one line."""
    lake = _lake(tmp_path)
    with stub_trino(lake.catalog()) as (port, _stub):
        engine = TrinoEngine(host="127.0.0.1", port=port)
        with engine.session() as session, pytest.raises(Exception) as err:
            session.run("DROP TABLE x")
    assert "GENERIC_USER_ERROR" in str(err.value)
    assert isinstance(StubTrino, type)


def test_refs_pin_the_trino_statement_at_the_snapshot_asked_for(tmp_path: Path) -> None:
    """A re-run pinned in time reads, inside Trino, the snapshot its ref names, not the one
    its upstream wrote since (Trino time travel, `FOR VERSION AS OF`)."""
    lake = _lake(tmp_path)
    first = FEATURES.slice(0, 3)
    write_table(lake.catalog(), ("xs_sql", "features"), first, None)
    pinned = lake.catalog().load_table(("xs_sql", "features")).current_snapshot()
    assert pinned is not None
    params = load_runtime_params(
        {"submission_id": "bt", "refs": {"features": {"snapshot_id": pinned.snapshot_id}}}
    )
    with stub_trino(lake.catalog()) as (port, stub):
        engine = TrinoEngine(host="127.0.0.1", port=port, catalog="iceberg")
        # the upstream moves on in the same run (all five rows), the node reads the pin
        result = _run(
            SPEC,
            lake,
            engine,
            prod_profile(**PROD_TRINO),
            FEATURES,
            "select",
            runtime_run_tags(params),
        )
    assert result.success
    moved = lake.catalog().load_table(("xs_sql", "features")).current_snapshot()
    assert moved is not None and moved.snapshot_id != pinned.snapshot_id
    universe = stub.received[0]
    assert f"FOR VERSION AS OF {pinned.snapshot_id} AS f" in universe.sql
    written = read_table(lake.catalog(), ("xs_sql", "universe"), None)
    assert set(written.column("symbol").to_pylist()) <= {"A", "B", "C"}


def test_a_single_run_backfill_writes_each_session_inside_trino(tmp_path: Path) -> None:
    """A ranged run (backfill: single_run): one write per session, and the materialization
    records the last session's snapshot with every session's rows."""
    lake = _lake(tmp_path)
    catalog = lake.catalog()
    ranged = "    kind: trino_sql\n    backfill: single_run\n"
    rollup, instance, upstream = _sessions_in_the_lake(
        lake, PARTITIONED.replace("    kind: trino_sql\n", ranged)
    )
    sessions = SESSIONS
    with stub_trino(catalog) as (port, stub):
        engine = TrinoEngine(host="127.0.0.1", port=port, catalog="iceberg")
        result = dg.materialize(
            [rollup, upstream],
            resources={
                "io_manager": lake,
                "sql_engine": engine,
                "artifact_store": lake.artifact_store,
            },
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": sessions[0],
                "dagster/asset_partition_range_end": sessions[-1],
            },
        )
    assert result.success
    assert sum(r.sql.startswith("INSERT INTO") for r in stub.received) == 2
    events = result.get_asset_materialization_events()
    assert sorted(e.partition or "" for e in events) == sessions  # one each, the same record
    materialization = events[-1].event_specific_data.materialization  # type: ignore[union-attr]
    meta = {k: v.value for k, v in materialization.metadata.items()}
    current = catalog.load_table(("xs_sql", "summary")).current_snapshot()
    assert current is not None and meta["snapshot_id"] == current.snapshot_id
    assert meta["rows"] == 2 and meta["partitions"] == 2
    assert meta["partition_range"] == "2024-01-02...2024-01-03"
    summary = read_table(catalog, ("xs_sql", "summary"), None).sort_by("partition_key")
    assert summary.column("symbols").to_pylist() == [5, 2]
