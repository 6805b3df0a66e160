"""Dependencies across teams' code locations: a dbt model over two teams' tables, and a
pipeline reading another team's published table as an external input.

The dbt project lives in the platform location only; its sources are the tables of
pipelines that other (team) locations define and materialize. Here xs_momentum_v1 stays
research's and xs_daily_eod is relabelled to execution (a copy of the example specs in
a tmp registry), so `dbt/session_backtest_vs_eod` reads one table of each team. Real
parts: each location's own Definitions (build_definitions(location=...)), the specs' nodes,
the Iceberg SqlCatalog on SQLite and dbt-duckdb; dbt's rows are compared with a pandas
join of the same Iceberg tables. research's eod_watch reads execution's
xs_daily_eod.eod_summary: its location holds that key as an unexecutable asset (Dagster's
cross-location dependency), execution's the materializable one, and the run reads the
snapshot execution committed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DagsterInstance,
    Definitions,
    DynamicPartitionsDefinition,
)
from dagster._core.events import LoadedInputData
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from definitions.assemble import build_definitions
from quantos_assets.tenancy.locations import PLATFORM_LOCATION
from resources.profile import active_profile

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
RESEARCH, EXECUTION = "team-research", "team-execution"
XS, EOD = "xs_momentum_v1", "xs_daily_eod"
BACKTEST = AssetKey([XS, "backtest_returns"])
EOD_SUMMARY = AssetKey([EOD, "eod_summary"])
RESEARCH_RUN = [AssetKey([XS, o]) for o in ("daily_bars", "features", "universe")] + [BACKTEST]
EXECUTION_RUN = [AssetKey([EOD, "bars"]), EOD_SUMMARY]
MODEL = AssetKey(["dbt", "session_backtest_vs_eod"])
# 2016-01-14 is an xs_daily_eod session the backtest (2022-2023) has no day for: the
# inner join must drop it, so the expected rows are not simply every session run.
SESSIONS = ["2016-01-14", "2023-06-01", "2023-06-02"]
TEAMS = """\
defaults:
  entrypoints: [quantos_assets.tasks]
teams:
  research: {reads: [xs_daily_eod.*]}
  execution: {}
"""
WATCH = AssetKey(["eod_watch", "eod_rows"])
# research's pipeline over execution's published table (its out eod_summary)
EOD_WATCH = {
    "version": 1,
    "pipeline_id": "eod_watch",
    "labels": {"team": "research"},
    "external_inputs": {"eod": {"table": f"{EOD}.eod_summary"}},
    "nodes": [
        {
            "id": "count",
            "kind": "trino_sql",
            "params": {"sql": "SELECT count(*) AS n, sum(symbols) AS symbols FROM eod"},
            "ins": ["eod"],
            "outs": ["eod_rows"],
        }
    ],
}


@dataclass
class Workspace:
    """The three locations built from one tmp registry and teams file, one instance."""

    locations: dict[str, Definitions]
    instance: DagsterInstance
    root: Path

    def iceberg(self, namespace: str, table: str) -> pd.DataFrame:
        from pyiceberg.catalog.sql import SqlCatalog

        profile = active_profile()
        catalog = SqlCatalog("quantos", uri=profile.catalog_uri, warehouse=profile.warehouse)
        return catalog.load_table((namespace, table)).scan().to_pandas()

    def iceberg_snapshot(self, namespace: str, table: str) -> int:
        from pyiceberg.catalog.sql import SqlCatalog

        profile = active_profile()
        catalog = SqlCatalog("quantos", uri=profile.catalog_uri, warehouse=profile.warehouse)
        snapshot = catalog.load_table((namespace, table)).current_snapshot()
        assert snapshot is not None
        return snapshot.snapshot_id

    def dbt_table(self, name: str) -> pd.DataFrame:
        path = active_profile().data_dir / "dbt" / "quantos.duckdb"
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute(f"select * from analytics.{name}").df()


def _relabel(spec: Path, team: str) -> None:
    """The spec's `labels.team` set to `team` (the location it lands in follows)."""
    doc = yaml.safe_load(spec.read_text())
    doc["labels"]["team"] = team
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("dbt_cross_team")
    specs = root / "specs"
    specs.mkdir()
    shutil.copy(REPO / "specs" / "xs_momentum_backtest.yaml", specs)
    shutil.copy(REPO / "specs" / "xs_daily_eod.yaml", specs)
    _relabel(specs / "xs_daily_eod.yaml", "execution")
    (specs / "eod_watch.yaml").write_text(yaml.safe_dump(EOD_WATCH, sort_keys=False))
    (root / "teams.yaml").write_text(TEAMS)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mp.setenv("QUANTOS_ENV", "local")
    mp.setenv("QUANTOS_DATA_DIR", str(root / "data"))
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("QUANTOS_SPECS_DIR", str(specs))
    mp.setenv("QUANTOS_TEAMS", str(root / "teams.yaml"))
    locations = {
        name: build_definitions(location=name) for name in (RESEARCH, EXECUTION, PLATFORM_LOCATION)
    }
    ws = Workspace(locations, DagsterInstance.get(), root)
    yield ws
    ws.instance.dispose()
    mp.undo()


def _defined(defs: Definitions) -> set[AssetKey]:
    """The keys a location defines (can materialize), not those it only depends on."""
    return set(defs.resolve_asset_graph().materializable_asset_keys)


def _assets_of(defs: Definitions) -> set[AssetKey]:
    """Every key of the location's own asset definitions and specs, as it was given them."""
    keys: set[AssetKey] = set()
    for a in defs.assets or []:
        if isinstance(a, AssetsDefinition):
            keys |= set(a.keys)
        elif isinstance(a, AssetSpec):
            keys.add(a.key)
    return keys


def test_the_model_depends_on_both_teams_assets_across_locations(workspace: Workspace) -> None:
    research, execution, platform = (
        workspace.locations[n] for n in (RESEARCH, EXECUTION, PLATFORM_LOCATION)
    )
    assert BACKTEST in _defined(research) and EOD_SUMMARY not in _defined(research)
    assert EOD_SUMMARY in _defined(execution) and BACKTEST not in _defined(execution)
    # The dbt project is the platform's only: no team location holds a dbt asset.
    for defs in (research, execution):
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        assert not {k for k in keys if k.path[0] == "dbt"}, keys

    graph = platform.resolve_asset_graph()
    assert graph.get(MODEL).parent_keys == {BACKTEST, EOD_SUMMARY}
    # Both parents are references to the team locations' assets, not copies: the platform
    # location cannot materialize or observe them and defines no AssetsDefinition of them.
    for key in (BACKTEST, EOD_SUMMARY):
        assert not graph.get(key).is_executable, key
    assert not {BACKTEST, EOD_SUMMARY} & _defined(platform)
    assert not {BACKTEST, EOD_SUMMARY} & _assets_of(platform)
    # The model follows the partitioned source's sessions (the backtest has none).
    part = graph.get(MODEL).partitions_def
    assert isinstance(part, DynamicPartitionsDefinition) and part.name == f"{EOD}__sessions"
    assert part == execution.resolve_asset_graph().get(EOD_SUMMARY).partitions_def


def test_a_model_over_two_teams_tables_materializes(workspace: Workspace) -> None:
    instance = workspace.instance
    research = workspace.locations[RESEARCH].resolve_implicit_global_asset_job_def()
    execution = workspace.locations[EXECUTION].resolve_implicit_global_asset_job_def()
    platform = workspace.locations[PLATFORM_LOCATION].resolve_implicit_global_asset_job_def()

    # Each team materializes its own pipeline in its own location.
    run = research.execute_in_process(instance=instance, asset_selection=RESEARCH_RUN)
    assert run.success
    instance.add_dynamic_partitions(f"{EOD}__sessions", SESSIONS)
    for session in SESSIONS:
        run = execution.execute_in_process(
            instance=instance, asset_selection=EXECUTION_RUN, partition_key=session
        )
        assert run.success

    # The platform's model over every session at once (single_run: a range is one dbt run).
    run = platform.execute_in_process(
        instance=instance,
        asset_selection=[MODEL],
        tags={
            ASSET_PARTITION_RANGE_START_TAG: SESSIONS[0],
            ASSET_PARTITION_RANGE_END_TAG: SESSIONS[-1],
        },
    )
    assert run.success
    assert {e.asset_key for e in run.get_asset_materialization_events()} == {MODEL}
    assert instance.get_materialized_partitions(MODEL) == set(SESSIONS)
    checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
    assert len(checks) == 4 and all(checks.values()), checks

    # dbt's rows are the join of the two teams' Iceberg tables, computed here in pandas.
    eod = workspace.iceberg(EOD, "eod_summary")
    eod = eod[eod["partition_key"].isin(SESSIONS)].copy()
    eod["date"] = pd.to_datetime(eod["partition_key"]).dt.date
    backtest = workspace.iceberg(XS, "backtest_returns")
    expected = eod.merge(backtest, on="date", how="inner").sort_values("partition_key")
    assert expected["partition_key"].tolist() == SESSIONS[1:]  # 2016 has no backtest day
    got = workspace.dbt_table(MODEL.path[-1]).sort_values("partition_key")
    assert got["partition_key"].tolist() == expected["partition_key"].tolist()
    assert [d.date() if hasattr(d, "date") else d for d in got["date"]] == expected["date"].tolist()
    assert got["eod_symbols"].tolist() == expected["symbols"].tolist()
    for ours, theirs in (
        ("eod_avg_close", "avg_close"),
        ("net_return", "net_return"),
        ("equity", "equity"),
    ):
        np.testing.assert_allclose(got[ours].to_numpy(), expected[theirs].to_numpy(), rtol=1e-12)


def test_a_pipeline_reads_another_teams_table_across_locations(workspace: Workspace) -> None:
    """research's eod_watch depends on execution's asset itself, not a copy: its location
    holds the key only as an unexecutable asset (Dagster joins it to execution's in the
    workspace graph); its run reads the snapshot execution's last run committed."""
    research, execution = (workspace.locations[n] for n in (RESEARCH, EXECUTION))
    graph = research.resolve_asset_graph()
    assert graph.get(WATCH).parent_keys == {EOD_SUMMARY}
    assert not graph.get(EOD_SUMMARY).is_executable
    assert EOD_SUMMARY not in _defined(research) and EOD_SUMMARY in _defined(execution)
    assert WATCH not in execution.resolve_asset_graph().get_all_asset_keys()
    # One location serving both teams (quantos run, a single-location deployment): the reader
    # depends on the producer's asset there, with no second definition of its key.
    whole = build_definitions().resolve_asset_graph()
    assert whole.get(WATCH).parent_keys == {EOD_SUMMARY}
    assert whole.get(EOD_SUMMARY).is_materializable

    instance = workspace.instance
    if instance.get_latest_materialization_event(EOD_SUMMARY) is None:  # run on its own
        instance.add_dynamic_partitions(f"{EOD}__sessions", SESSIONS)
        job = execution.resolve_implicit_global_asset_job_def()
        for session in SESSIONS:
            assert job.execute_in_process(
                instance=instance, asset_selection=EXECUTION_RUN, partition_key=session
            ).success
    run = research.resolve_job_def("eod_watch").execute_in_process(instance=instance)
    assert run.success
    eod = workspace.iceberg(EOD, "eod_summary")
    got = workspace.iceberg("eod_watch", "eod_rows")
    assert got["n"].tolist() == [len(eod)]
    assert [int(v) for v in got["symbols"]] == [int(eod["symbols"].sum())]
    (loaded,) = [e for e in run.all_events if e.event_type_value == "LOADED_INPUT"]
    data = loaded.event_specific_data
    assert isinstance(data, LoadedInputData)
    read = {k: v.value for k, v in data.metadata.items()}
    current = workspace.iceberg_snapshot(EOD, "eod_summary")
    assert read["table"] == f"{EOD}.eod_summary" and read["snapshot_id"] == current
