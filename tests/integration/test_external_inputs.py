"""External inputs (issue 19, point 2): a spec reads a lake table no pipeline of ours writes.

`market.bars_1m` is written here with pyiceberg directly, as a market-data loader outside the
platform would. A run reads its current snapshot; after the loader appends, a run pinned by
`refs.bars` (snapshot id or as_of) writes the first run's bytes again. What each step read is
on its LOADED_INPUT event. A team without a read grant, or naming a registered pipeline's
namespace as an external table, is refused in one line before anything runs or is registered.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance
from pyiceberg.catalog import Catalog

from definitions.assemble import build_definitions, definitions_for
from quantos_assets.apps.cli.main import main
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec_rules.firm import load_spec
from resources.iceberg_tables import read_table
from resources.profile import active_profile, build_resources

pytestmark = pytest.mark.integration

SPEC = """\
version: 1
pipeline_id: bars_demo
labels: {team: research}
external_inputs:
  bars: {table: market.bars_1m}
nodes:
  - id: vwap
    kind: trino_sql
    params:
      sql: >-
        SELECT symbol, sum(px * volume) / sum(volume) AS vwap, count(*) AS n
        FROM bars GROUP BY symbol ORDER BY symbol
    ins: [bars]
    outs: [vwap]
  - id: split
    kind: python_task
    params:
      entrypoint: "tests.integration.test_kinds_entrypoints:split_by_volume"
      threshold: 150
    ins: [bars]
    outs: [liquid, illiquid]
"""


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _bars(start: int) -> pa.Table:
    return pa.table(
        {
            "symbol": [f"S{i % 3}" for i in range(start, start + 6)],
            "px": [100.0 + i for i in range(start, start + 6)],
            "volume": [100 + 20 * i for i in range(start, start + 6)],
        }
    )


def _cause(event: Any) -> str:
    """The exception a failed step's input load raised, as Dagster records it."""
    return str(event.step_failure_data.error.cause.message)


class Market:
    """The market-data loader: appends bars to market.bars_1m outside the platform."""

    def __init__(self, catalog: Catalog) -> None:
        catalog.create_namespace_if_not_exists("market")
        self.table = catalog.create_table(("market", "bars_1m"), schema=_bars(0).schema)

    def append(self, start: int) -> int:
        self.table.append(_bars(start))
        snapshot = self.table.current_snapshot()
        assert snapshot is not None
        return snapshot.snapshot_id


class Demo:
    def __init__(self, folder: Path) -> None:
        self.spec = folder / "bars_demo.yaml"
        self.spec.write_text(SPEC)
        self.profile = active_profile()
        pipeline = build_pipeline(load_spec(self.spec), self.profile)
        self.job = definitions_for([pipeline], self.profile).resolve_job_def("bars_demo")
        self.catalog = build_resources(self.profile)["io_manager"].catalog()

    def run(self, refs: dict | None = None):
        tags = {}
        if refs is not None:
            params = load_runtime_params({"submission_id": "bt-bars", "refs": refs})
            tags = runtime_run_tags(params)
        with DagsterInstance.get() as instance:
            result = self.job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
            records = instance.get_records_for_run(
                result.run_id, of_type=DagsterEventType.LOADED_INPUT
            ).records
            events = [r.event_log_entry.dagster_event for r in records]
            # what the IO manager recorded (Dagster adds the AssetIn's own metadata)
            loaded: dict[tuple[str | None, str], dict[str, Any]] = {}
            for event in events:
                data: Any = event.event_specific_data if event is not None else None
                if event is not None and data is not None:
                    loaded[(event.step_key, data.input_name)] = {
                        k: v.value
                        for k, v in data.metadata.items()
                        if k in ("table", "snapshot_id", "ref")
                    }
        return result, loaded

    def out(self, name: str) -> str:
        return _digest(read_table(self.catalog, ("bars_demo", name), None))


def test_a_spec_reads_an_external_table_now_and_pinned_in_time(data_dir: Path) -> None:
    demo = Demo(data_dir)
    market = Market(demo.catalog)
    first = market.append(0)

    result, loaded = demo.run()
    assert result.success
    vwap_1, liquid_1 = demo.out("vwap"), demo.out("liquid")
    # both ways of reading (a TableRef for SQL, Arrow for a python_task) at the current snapshot,
    # recorded for lineage under the table's own name
    for step in ("bars_demo__vwap", "bars_demo__split"):
        assert loaded[(step, "bars")] == {"table": "market.bars_1m", "snapshot_id": first}
    rows = read_table(demo.catalog, ("bars_demo", "vwap"), None)
    assert sum(rows["n"].to_pylist()) == 6

    moment = datetime.now(UTC)
    time.sleep(0.05)
    second = market.append(6)  # the market moves on
    result, loaded = demo.run()
    assert result.success
    assert loaded[("bars_demo__vwap", "bars")]["snapshot_id"] == second
    assert demo.out("vwap") != vwap_1 and demo.out("liquid") != liquid_1

    for ref in ({"snapshot_id": first}, {"as_of": moment.isoformat()}):
        result, loaded = demo.run({"bars": ref})
        assert result.success, ref
        assert demo.out("vwap") == vwap_1, ref  # byte-identical to the first run
        assert demo.out("liquid") == liquid_1, ref
        shown = f"snapshot:{first}" if "snapshot_id" in ref else f"as_of:{ref['as_of']}"
        for step in ("bars_demo__vwap", "bars_demo__split"):
            assert loaded[(step, "bars")] == {
                "table": "market.bars_1m",
                "snapshot_id": first,
                "ref": shown,
            }
    # the loader's table is only read
    assert market.table.refresh().current_snapshot().snapshot_id == second  # type: ignore[union-attr]


def test_a_ref_to_a_gone_external_snapshot_or_a_missing_table_stops_the_run(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = Demo(data_dir)
    result, _ = demo.run()
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures
    # the IO manager's one line, as Dagster shows a failed load (its cause)
    assert {_cause(e) for e in failures} == {
        (
            "resources.lake_io_manager.LakeIOError: external input bars: market.bars_1m does not "
            "exist in the lake\n"
        )
    }

    Market(demo.catalog).append(0)
    result, _ = demo.run({"bars": {"snapshot_id": 12345}})
    assert not result.success
    # each step stops at its load of the pinned table, before its node works
    causes = {
        e.step_key: _cause(e) for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    }
    assert causes == dict.fromkeys(
        ["bars_demo__split", "bars_demo__vwap"],
        "resources.lake_io_manager.LakeIOError: refs.bars: snapshot 12345 of market.bars_1m no "
        "longer exists (expired, or never did); pin a snapshot the table still has\n",
    )

    params = data_dir / "params.yaml"
    params.write_text("submission_id: bt1\nrefs: {bars: {snapshot_id: 7}}\n")
    assert main(["run", str(demo.spec), "--params", str(params)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"{params}:1: refs.bars: snapshot 7 of market.bars_1m no longer exists (expired, "
        "or never did); pin a snapshot the table still has"
    )


def _register(spec: Path, team: str, specs: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("QUANTOS_SPECS_DIR", str(specs))
    return main(["register", str(spec), "--team", team])


def test_a_team_reads_only_the_tables_it_is_granted(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    specs = tmp_path / "registry"
    specs.mkdir()
    spec = tmp_path / "bars_demo.yaml"
    spec.write_text(SPEC.replace("team: research", "team: execution"))
    refusal = (
        "external_inputs.bars.table: 'market.bars_1m' is not granted: team execution may read: "
        "none (deploy/teams.yaml reads)"
    )
    # quantos validate: the field's line
    assert main(["validate", str(spec)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == f"{spec}:5: {refusal}"
    # quantos register: admitted by the same rule, nothing written
    assert _register(spec, "execution", specs, monkeypatch) == 1
    assert capsys.readouterr().err.strip() == f"quantos: register refused (reads): {refusal}"
    assert not list(specs.glob("*.json"))
    # quantos run: refused before a run exists
    assert main(["run", str(spec)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"{spec}:5: {refusal}"
    # placed in the registry by hand: the code location leaves it out, the others load
    (specs / "bars_demo.yaml").write_text(spec.read_text())
    defs = build_definitions(active_profile(), specs, dbt=False)
    graph = defs.get_repository_def().asset_graph
    assert not graph.has(AssetKey(["bars_demo", "vwap"]))
    marker = graph.get(AssetKey(["invalid_specs", "bars_demo"]))
    assert marker.metadata["errors"] == f"{specs / 'bars_demo.yaml'}:5: {refusal}"
    # the granted team registers it
    (specs / "bars_demo.yaml").unlink()
    spec.write_text(SPEC)
    assert _register(spec, "research", specs, monkeypatch) == 0


FEED = """\
version: 1
pipeline_id: exec_fills
labels: {team: execution}
nodes:
  - id: fills
    kind: python_task
    params: {entrypoint: "tests.integration.test_kinds_entrypoints:fresh_prices", symbols: 3}
    outs: [fills]
"""


def test_another_pipelines_namespace_is_no_external_table(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """A wildcard grant opens market data, never a registered pipeline's tables: research
    granted `*.*` still cannot read execution's `exec_fills.fills` as an external input."""
    specs = tmp_path / "registry"
    specs.mkdir()
    feed = tmp_path / "exec_fills.yaml"
    feed.write_text(FEED)
    assert _register(feed, "execution", specs, monkeypatch) == 0
    teams = tmp_path / "teams.yaml"
    teams.write_text(
        "teams:\n"
        "  research: {entrypoints: [quantos_assets.tasks, tests], reads: ['*.*']}\n"
        "  execution: {entrypoints: [quantos_assets.tasks, tests]}\n"
    )
    monkeypatch.setenv("QUANTOS_TEAMS", str(teams))
    spec = tmp_path / "bars_demo.yaml"
    spec.write_text(SPEC.replace("market.bars_1m", "exec_fills.fills"))
    capsys.readouterr()
    assert _register(spec, "research", specs, monkeypatch) == 1
    assert capsys.readouterr().err.strip() == (
        "quantos: register refused (reads): external_inputs.bars.table: 'exec_fills.fills' is in "
        "the namespace of pipeline 'exec_fills': only a grant naming 'exec_fills' opens it; "
        "team research may read: *.* (deploy/teams.yaml reads)"
    )
    assert [p.name for p in specs.glob("*.json")] == ["exec_fills.json"]
    assert main(["validate", str(spec)]) == 1
    assert "is in the namespace of pipeline 'exec_fills'" in capsys.readouterr().err
    # a grant that names the namespace opens it
    teams.write_text(
        "teams:\n"
        "  research: {entrypoints: [quantos_assets.tasks, tests], reads: ['exec_fills.*']}\n"
        "  execution: {entrypoints: [quantos_assets.tasks, tests]}\n"
    )
    assert _register(spec, "research", specs, monkeypatch) == 0


def test_inside_trino_an_external_input_is_read_qualified_and_pinned(tmp_path: Path) -> None:
    """Staging/prod with Trino: the SQL node's statement reads the external table in its own
    namespace, `FOR VERSION AS OF` the snapshot its ref pins, and writes what DuckDB writes."""
    import dagster as dg
    import sqlglot
    from profiles import prod_profile
    from sqlglot import exp
    from trino_iceberg_stub import stub_trino

    from resources.artifact_store import ArtifactStore
    from resources.lake_io_manager import LakeIOManager
    from resources.trino_engine import TrinoEngine

    lake = LakeIOManager(
        catalog_uri=f"sqlite:///{tmp_path / 'catalog.db'}",
        warehouse=str(tmp_path / "warehouse"),
        artifact_store=ArtifactStore(root=str(tmp_path / "artifacts")),
    )
    market = Market(lake.catalog())
    first = market.append(0)
    market.append(6)
    spec = tmp_path / "bars_demo.yaml"
    spec.write_text(SPEC)
    profile = prod_profile(QUANTOS_TRINO_HOST="127.0.0.1", QUANTOS_TRINO_CATALOG="iceberg")
    pipeline = build_pipeline(load_spec(spec), profile)
    vwap = next(
        a
        for a in pipeline.assets
        if isinstance(a, dg.AssetsDefinition) and a.op.name == "bars_demo__vwap"
    )
    params = load_runtime_params({"submission_id": "bt", "refs": {"bars": {"snapshot_id": first}}})
    with stub_trino(lake.catalog()) as (port, stub):
        engine = TrinoEngine(host="127.0.0.1", port=port, catalog="iceberg")
        result = dg.materialize(
            [*pipeline.external, vwap],
            resources={
                "io_manager": lake,
                "sql_engine": engine,
                "artifact_store": lake.artifact_store,
            },
            instance=dg.DagsterInstance.ephemeral(),
            tags=runtime_run_tags(params),
        )
    assert result.success
    (write,) = [r.sql for r in stub.received if r.sql.startswith("CREATE OR REPLACE")]
    (read,) = [t for t in sqlglot.parse_one(write, read="trino").expression.find_all(exp.Table)]
    assert (read.catalog, read.db, read.name) == ("iceberg", "market", "bars_1m")
    assert read.args["version"].expression.this == str(first)
    rows = read_table(lake.catalog(), ("bars_demo", "vwap"), None)
    assert sum(rows["n"].to_pylist()) == 6  # the pinned snapshot's bars, not the current 12
