"""dbt models in the same asset graph as the spec pipelines, on the local profile.

Real parts: the code location's own Definitions (build_definitions), the example specs'
nodes (dagster-pipes subprocesses, DuckDB SQL, Iceberg SqlCatalog on SQLite), and dbt
itself (dbt-duckdb reading the Iceberg tables through its pyiceberg plugin). Results
computed by dbt are compared with pandas over the same Iceberg tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInstance, DynamicPartitionsDefinition
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from definitions.assemble import build_definitions
from resources.dbt import DbtResource
from resources.profile import ProfileError, active_profile

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
XS = "xs_momentum_v1"
SPEC_NODES = [AssetKey([XS, o]) for o in ("daily_bars", "features", "universe", "backtest_returns")]
DBT_MODELS = [
    AssetKey(["dbt", m])
    for m in ("factor_returns_daily", "portfolio_pnl_daily", "portfolio_pnl_monthly")
]
PREMIUM = AssetKey(["dbt", "session_close_premium"])


class Lake:
    """The isolated local profile one module's tests share (a pipeline run is ~10 s)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.defs = build_definitions()
        self.instance = DagsterInstance.get()
        self.job = self.defs.resolve_implicit_global_asset_job_def()
        profile = active_profile()
        from pyiceberg.catalog.sql import SqlCatalog

        self.catalog = SqlCatalog("quantos", uri=profile.catalog_uri, warehouse=profile.warehouse)
        self.duckdb_path = profile.data_dir / "dbt" / "quantos.duckdb"

    def iceberg(self, namespace: str, table: str) -> pd.DataFrame:
        return self.catalog.load_table((namespace, table)).scan().to_pandas()

    def dbt_table(self, name: str) -> pd.DataFrame:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as con:
            return con.execute(f"select * from analytics.{name}").df()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("dbt")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mp.setenv("QUANTOS_ENV", "local")
    mp.setenv("QUANTOS_DATA_DIR", str(root / "data"))
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("QUANTOS_SPECS_DIR", str(REPO / "specs"))
    lake = Lake(root)
    yield lake
    lake.instance.dispose()
    mp.undo()


def _checks(result) -> dict[tuple[str, str], bool]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }


def _factor_returns(universe: pd.DataFrame) -> pd.DataFrame:
    """factor_returns_daily.sql in pandas: demeaned-rank weights, gross 1, next-day return."""
    u = universe[universe["fwd_return_1d"].notna()]
    out = {"symbols": u.groupby("date").size()}
    for rank, name in (
        ("mom_rank", "momentum"),
        ("rev_rank", "reversal"),
        ("vol_rank", "volatility"),
    ):
        w = u[rank] - u.groupby("date")[rank].transform("mean")
        out[f"{name}_return"] = (w * u["fwd_return_1d"]).groupby(u["date"]).sum() / w.abs().groupby(
            u["date"]
        ).sum()
    return pd.DataFrame(out).sort_index()


def test_spec_nodes_and_dbt_models_run_in_one_graph(lake: Lake) -> None:
    graph = lake.defs.resolve_asset_graph()
    # A dbt source is the spec's own asset: lineage runs across.
    assert graph.get(DBT_MODELS[0]).parent_keys == {AssetKey([XS, "universe"])}
    assert graph.get(DBT_MODELS[1]).parent_keys == {
        AssetKey([XS, "backtest_returns"]),
        DBT_MODELS[0],
    }
    assert graph.get(DBT_MODELS[0]).automation_condition is not None

    result = lake.job.execute_in_process(
        instance=lake.instance, asset_selection=[*SPEC_NODES, *DBT_MODELS], raise_on_error=False
    )
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {*SPEC_NODES, *DBT_MODELS}
    # Every dbt test ran as an asset check and passed.
    checks = _checks(result)
    assert len(checks) == 22, sorted(checks)
    assert all(checks.values())
    assert (
        "dbt/factor_returns_daily",
        "accepted_range_factor_returns_daily_momentum_return__0_25___0_25",
    ) in checks
    assert (
        "dbt/portfolio_pnl_daily",
        "relationships_portfolio_pnl_daily_date__date__ref_factor_returns_daily_",
    ) in checks

    # dbt's numbers are pandas' numbers over the same Iceberg tables.
    expected = _factor_returns(lake.iceberg(XS, "universe"))
    got = lake.dbt_table("factor_returns_daily").set_index("date").sort_index()
    got.index = pd.Index([d.date() if hasattr(d, "date") else d for d in got.index], name="date")
    assert list(got.index) == list(expected.index)
    assert (got["symbols"].to_numpy() == expected["symbols"].to_numpy()).all()
    for column in ("momentum_return", "reversal_return", "volatility_return"):
        np.testing.assert_allclose(
            got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-9, atol=1e-12
        )

    backtest = lake.iceberg(XS, "backtest_returns")
    backtest["month"] = pd.to_datetime(backtest["date"]).dt.to_period("M").dt.start_time.dt.date
    by_month = backtest.sort_values("date").groupby("month")
    monthly = lake.dbt_table("portfolio_pnl_monthly").sort_values("month")
    assert [m.date() if hasattr(m, "date") else m for m in monthly["month"]] == list(
        by_month.groups
    )
    np.testing.assert_allclose(monthly["net_return"], by_month["net_return"].sum(), rtol=1e-9)
    np.testing.assert_allclose(
        monthly["net_return_pct"], np.expm1(by_month["net_return"].sum()), rtol=1e-9
    )
    np.testing.assert_allclose(monthly["equity_end"], by_month["equity"].last(), rtol=1e-12)
    assert monthly["trading_days"].tolist() == by_month.size().tolist()
    assert int(monthly["trading_days"].sum()) == len(backtest)


def test_session_partitioned_model_follows_the_sessions_of_its_upstream(lake: Lake) -> None:
    """The EOD spec is session-partitioned, so is the model reading it; a run's session
    range reaches dbt as vars and only those sessions' rows are (re)computed."""
    graph = lake.defs.resolve_asset_graph()
    part = graph.get(PREMIUM).partitions_def
    assert isinstance(part, DynamicPartitionsDefinition) and part.name == "xs_daily_eod__sessions"
    assert part == graph.get(AssetKey(["xs_daily_eod", "bars"])).partitions_def
    sessions = ["2016-01-14", "2016-01-15", "2016-01-19"]
    lake.instance.add_dynamic_partitions("xs_daily_eod__sessions", sessions)
    upstream = [AssetKey(["xs_daily_eod", "bars"]), AssetKey(["xs_daily_eod", "eod_summary"])]
    for key in sessions:
        spec_run = lake.job.execute_in_process(
            instance=lake.instance, asset_selection=upstream, partition_key=key
        )
        assert spec_run.success

    # One dbt run over the first two sessions (single_run backfill: a range is one run).
    ranged = lake.job.execute_in_process(
        instance=lake.instance,
        asset_selection=[PREMIUM],
        tags={
            ASSET_PARTITION_RANGE_START_TAG: sessions[0],
            ASSET_PARTITION_RANGE_END_TAG: sessions[1],
        },
    )
    assert ranged.success
    assert lake.instance.get_materialized_partitions(PREMIUM) == set(sessions[:2])
    assert all(_checks(ranged).values()) and len(_checks(ranged)) == 7

    bars = lake.iceberg("xs_daily_eod", "bars")
    bars = bars[bars["partition_key"].isin(sessions[:2])].copy()
    bars["premium"] = bars["close"] / bars.groupby("partition_key")["close"].transform("mean") - 1
    got = lake.dbt_table("session_close_premium").sort_values(["partition_key", "symbol"])
    assert sorted(got["partition_key"].unique()) == sessions[:2]
    expected = bars.sort_values(["partition_key", "symbol"])
    np.testing.assert_allclose(got["premium"].to_numpy(), expected["premium"].to_numpy(), rtol=1e-9)

    # Re-running one session replaces its rows; the other session is left alone.
    again = lake.job.execute_in_process(
        instance=lake.instance, asset_selection=[PREMIUM], partition_key=sessions[1]
    )
    assert again.success
    assert len(lake.dbt_table("session_close_premium")) == len(got)


def test_failing_dbt_test_is_a_failed_check_that_gates_downstream(lake: Lake) -> None:
    """Bad upstream data (a +1000 log return in the universe) fails the accepted_range
    test: the check fails, and the models downstream of it are not built."""
    table = lake.catalog.load_table((XS, "universe"))
    rows = table.scan().to_arrow()
    # A row whose three factor weights are all well away from zero (a rank at its day's mean
    # weighs nothing): its +1000 return then moves every factor of that day beyond +-25%.
    u = rows.to_pandas()
    u = u[
        u["fwd_return_1d"].notna()
    ]  # as the model: days' weights over rows with a next-day return
    share = pd.concat(
        [
            (u[r] - u.groupby("date")[r].transform("mean")).abs()
            for r in ("mom_rank", "rev_rank", "vol_rank")
        ],
        axis=1,
    ).min(axis=1)
    row = rows.slice(int(share.idxmax()), 1)
    assert share.max() >= 0.1  # ranks are in [0, 1]: a tenth of the range is plenty at +1000
    row = row.set_column(
        row.schema.get_field_index("fwd_return_1d"), "fwd_return_1d", pa.array([1000.0])
    )
    table.append(row.cast(table.schema().as_arrow()))
    bad_day = row["date"][0].as_py()
    assert isinstance(bad_day, date)

    result = lake.job.execute_in_process(
        instance=lake.instance, asset_selection=DBT_MODELS, raise_on_error=False
    )
    assert not result.success
    checks = _checks(result)
    failed = {k for k, passed in checks.items() if not passed}
    assert failed == {
        ("dbt/factor_returns_daily", f"accepted_range_factor_returns_daily_{f}_return__0_25___0_25")
        for f in ("momentum", "reversal", "volatility")
    }
    evaluation = next(e for e in result.get_asset_check_evaluations() if not e.passed)
    assert evaluation.severity.value == "ERROR"
    assert evaluation.metadata["dagster_dbt/failed_row_count"].value == 1  # the bad day
    # The check is blocking: models after it were skipped by dbt and never materialized.
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {DBT_MODELS[0]}
    specs = lake.defs.resolve_assets_def(DBT_MODELS[0]).check_specs
    assert {s.name for s in specs if s.blocking} >= {name for _key, name in failed}


def test_prod_target_without_trino_is_a_one_line_error(tmp_path: Path) -> None:
    resource = DbtResource(
        project_dir=str(REPO / "dbt_project"), target="prod", env={}, profile_name="prod"
    )
    with pytest.raises(
        ProfileError, match=r"^QUANTOS_ENV=prod: dbt models run on Trino: set QUANTOS_TRINO_HOST$"
    ):
        resource.cli(["build"])
