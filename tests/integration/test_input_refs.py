"""Inputs pinned in time (issue 19, point 2): a backtest re-run on the data exactly as it was.

The upstream moves on between runs (random prices each time); a re-run of the downstream node
with the first run's refs, by snapshot id or as of a moment, writes the same bytes as the first
run. A ref to a snapshot the table no longer has stops the run in each step before it works,
and `quantos run --params` refuses it before any run exists.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import DagsterEventType, DagsterInstance, DynamicPartitionsDefinition

from definitions.assemble import definitions_for
from quantos_assets.apps.cli.main import main
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec_rules.firm import load_spec
from resources.iceberg_tables import read_table
from resources.profile import active_profile, build_resources

pytestmark = pytest.mark.integration

SPEC = """
version: 1
pipeline_id: refs_demo
nodes:
  - id: prices
    kind: python_task
    params: {entrypoint: "tests.integration.test_kinds_entrypoints:fresh_prices", symbols: 20}
    outs: [prices]
  - id: signal
    kind: trino_sql
    params:
      sql: SELECT symbol, px, px - avg(px) OVER () AS excess FROM prices ORDER BY symbol
    ins: [prices]
    outs: [signal]
"""


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


class Demo:
    def __init__(self, folder: Path) -> None:
        self.spec = folder / "refs_demo.yaml"
        self.spec.write_text(SPEC)
        self.profile = active_profile()
        pipeline = build_pipeline(load_spec(self.spec), self.profile)
        self.job = definitions_for([pipeline], self.profile).resolve_job_def("refs_demo")
        self.catalog = build_resources(self.profile)["io_manager"].catalog()

    def run(self, nodes: list[str] | None = None, refs: dict | None = None):
        tags = {}
        if refs is not None:
            params = load_runtime_params({"submission_id": "bt-rerun", "refs": refs})
            tags = runtime_run_tags(params)
        selection = None
        if nodes is not None:
            from dagster import AssetKey

            selection = [AssetKey(["refs_demo", n]) for n in nodes]
        with DagsterInstance.get() as instance:
            result = self.job.execute_in_process(
                instance=instance, tags=tags, asset_selection=selection, raise_on_error=False
            )
            records = instance.get_records_for_run(
                result.run_id, of_type=DagsterEventType.LOADED_INPUT
            ).records
            events = [r.event_log_entry.dagster_event for r in records]
            loaded = [e.event_specific_data for e in events if e is not None]
        return result, loaded

    def current(self, out: str) -> tuple[int, str]:
        table = self.catalog.load_table(("refs_demo", out))
        snapshot = table.current_snapshot()
        assert snapshot is not None
        return snapshot.snapshot_id, _digest(read_table(self.catalog, ("refs_demo", out), None))


def test_a_rerun_with_the_first_runs_refs_writes_the_same_bytes(data_dir: Path) -> None:
    demo = Demo(data_dir)
    first, _ = demo.run()
    assert first.success
    prices_1, signal_1 = demo.current("prices")[0], demo.current("signal")[1]
    moment = datetime.now(UTC)
    time.sleep(0.05)
    assert demo.run()[0].success  # the upstream moves on
    prices_2 = demo.current("prices")[0]
    assert prices_2 != prices_1 and demo.current("signal")[1] != signal_1

    for ref in ({"snapshot_id": prices_1}, {"as_of": moment.isoformat()}):
        result, loaded = demo.run(["signal"], {"prices": ref})
        assert result.success, ref
        assert demo.current("signal")[1] == signal_1, ref
        # what was read is on the LOADED_INPUT event (lineage takes its version from there)
        (read,) = loaded
        assert read.metadata["snapshot_id"].value == prices_1
        shown = f"snapshot:{prices_1}" if "snapshot_id" in ref else f"as_of:{ref['as_of']}"
        assert read.metadata["ref"].value == shown
    # the upstream's own history is untouched by the re-runs
    assert demo.current("prices")[0] == prices_2


def test_a_ref_to_a_snapshot_that_is_gone_stops_every_step_before_it_works(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = Demo(data_dir)
    assert demo.run()[0].success
    prices, signal = demo.current("prices")[0], demo.current("signal")
    result, _ = demo.run(None, {"prices": {"snapshot_id": 12345}})
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    messages = {e.step_key: e.step_failure_data.user_failure_data.description for e in failures}
    # the first node reads nothing pinned, and still does nothing: no new prices
    assert messages["refs_demo__prices"] == (
        "refs_demo.prices: refs.prices: snapshot 12345 of refs_demo.prices no longer exists "
        "(expired, or never did); pin a snapshot the table still has"
    )
    assert demo.current("prices")[0] == prices and demo.current("signal") == signal

    # as_of before the table existed
    result, _ = demo.run(["signal"], {"prices": {"as_of": "2001-01-01T00:00:00+00:00"}})
    assert not result.success

    # quantos run --params: refused before a run exists, one line naming the file
    params = data_dir / "params.json"
    params.write_text(json.dumps({"submission_id": "bt1", "refs": {"prices": {"snapshot_id": 7}}}))
    with DagsterInstance.get() as instance:
        runs_before = len(instance.get_run_records())
    assert main(["run", str(demo.spec), "--params", str(params)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"{params}:1: refs.prices: snapshot 7 of refs_demo.prices no longer exists (expired, "
        "or never did); pin a snapshot the table still has"
    )
    with DagsterInstance.get() as instance:
        assert len(instance.get_run_records()) == runs_before
    params.write_text(json.dumps({"submission_id": "bt1", "refs": {"nope": {"snapshot_id": 7}}}))
    assert main(["run", str(demo.spec), "--params", str(params)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"{params}:1: refs.nope: no node of pipeline refs_demo reads an input of that name "
        "(inputs: prices)"
    )


def test_a_ref_is_exactly_one_of_snapshot_id_and_as_of() -> None:
    from quantos_assets.spec.errors import SpecError

    for bad in ({}, {"snapshot_id": 1, "as_of": "2026-01-01T00:00:00Z"}, {"as_of": "2026-01-01"}):
        with pytest.raises(SpecError) as err:
            load_runtime_params({"submission_id": "x", "refs": {"prices": bad}})
        assert "refs.prices" in str(err.value), bad


def test_the_gateway_client_refuses_a_ref_to_no_input_before_dagster_is_asked(
    tmp_path: Path,
) -> None:
    from quantos_assets.apps.client.submissions import QuantosClient, SubmissionError
    from quantos_assets.spec_rules.firm import load_spec_text

    spec = load_spec_text(SPEC, "refs_demo.yaml", "yaml").spec
    client = QuantosClient("http://127.0.0.1:9", tmp_path)  # nothing listens: never asked
    params = load_runtime_params({"submission_id": "s1", "refs": {"signal": {"snapshot_id": 1}}})
    with pytest.raises(SubmissionError) as err:
        client.check(spec, params=params)
    assert err.value.status == 422
    assert str(err.value) == (
        "runtime_params.refs.signal: no node of pipeline refs_demo reads an input of that name "
        "(inputs: prices)"
    )
    ok = load_runtime_params({"submission_id": "s2", "refs": {"prices": {"snapshot_id": 1}}})
    client.check(spec, params=ok)


PARTITIONED = """
version: 1
pipeline_id: refs_sessions
partitions: {calendar: XNYS, start: "2024-01-02"}
nodes:
  - id: prices
    kind: python_task
    params: {entrypoint: "tests.integration.test_kinds_entrypoints:fresh_prices", symbols: 8}
    outs: [prices]
  - id: signal
    kind: trino_sql
    backfill: single_run
    params:
      sql: SELECT symbol, px - avg(px) OVER () AS excess FROM prices ORDER BY symbol
    ins: [prices]
    outs: [signal]
"""


def test_a_backfill_over_a_range_reads_the_pinned_sessions(data_dir: Path) -> None:
    """A single_run backfill of several sessions with the `quantos/refs` tag (a backfill
    launched with it) reads each session of its input at the pinned snapshot."""
    from dagster import AssetKey, materialize

    spec_file = data_dir / "refs_sessions.yaml"
    spec_file.write_text(PARTITIONED)
    profile = active_profile()
    pipeline = build_pipeline(load_spec(spec_file), profile)
    resources = build_resources(profile)
    catalog = resources["io_manager"].catalog()
    sessions = ["2024-01-02", "2024-01-03"]
    signal_key = AssetKey(["refs_sessions", "signal"])

    def signal() -> str:
        table = read_table(catalog, ("refs_sessions", "signal"), None)
        return _digest(table.sort_by([("partition_key", "ascending"), ("symbol", "ascending")]))

    with DagsterInstance.get() as instance:
        partitions = pipeline.assets[0].partitions_def
        assert isinstance(partitions, DynamicPartitionsDefinition) and partitions.name
        instance.add_dynamic_partitions(partitions.name, sessions)
        for key in sessions:
            assert materialize(
                pipeline.assets, partition_key=key, instance=instance, resources=resources
            ).success
        pinned = catalog.load_table(("refs_sessions", "prices")).current_snapshot()
        assert pinned is not None
        first = signal()
        for key in sessions:  # the upstream moves on, session by session
            assert materialize(
                pipeline.assets, partition_key=key, instance=instance, resources=resources
            ).success
        assert signal() != first
        params = load_runtime_params(
            {"submission_id": "bf", "refs": {"prices": {"snapshot_id": pinned.snapshot_id}}}
        )
        ranged = materialize(
            pipeline.assets,
            instance=instance,
            resources=resources,
            selection=[signal_key],
            tags={
                **runtime_run_tags(params),
                "dagster/asset_partition_range_start": sessions[0],
                "dagster/asset_partition_range_end": sessions[-1],
            },
        )
        assert ranged.success
    assert signal() == first


def test_quantos_lake_snapshots_lists_what_a_ref_can_pin(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = Demo(data_dir)
    first, _ = demo.run()
    prices_1 = demo.current("prices")[0]
    second, _ = demo.run()
    prices_2 = demo.current("prices")[0]
    capsys.readouterr()
    assert main(["lake", "snapshots", "refs_demo", "prices", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["snapshot_id"] for r in rows] == [prices_2, prices_1]  # newest first
    assert [r["by"] for r in rows] == [f"run {second.run_id}", f"run {first.run_id}"]
    assert all(r["rows"] == 20 for r in rows)
    assert main(["lake", "snapshots", "refs_demo", "prices"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["snapshot_id", "committed", "(UTC)", "operation", "rows", "by"]
    assert str(prices_2) in table[1]
    assert main(["lake", "snapshots", "refs_demo", "nothing"]) == 1
    assert (
        capsys.readouterr().err.strip() == "quantos: refs_demo.nothing does not exist in the lake"
    )
