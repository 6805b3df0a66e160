"""The plain-Dagster side of bench/load.py: the same 10-node graph as its spec, as @assets.

Each asset runs the node's query on DuckDB, as the spec's trino_sql nodes do locally, and
returns the Arrow table to Dagster's default IO manager; the executor is chosen by the
same QUANTOS_LOCAL_EXECUTOR switch as the quantos location, so the two sides differ only
by what the platform adds (spec translation, Iceberg tables, lineage metadata, tags).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from dagster import AssetIn, AssetsDefinition, Definitions, asset, define_asset_job

from resources.profile import active_profile, build_executor

NODES = 10


def _node(i: int) -> AssetsDefinition:
    ins = {"up": AssetIn(key=["plain10", f"n{i - 2}"])} if i >= 2 else {}

    @asset(key=["plain10", f"n{i}"], ins=ins, group_name="plain10")
    def node(**inputs: pa.Table) -> pa.Table:
        con = duckdb.connect()
        if "up" in inputs:
            con.register("up", inputs["up"])
            return con.execute("SELECT count(*) AS x FROM up").to_arrow_table()
        return con.execute("SELECT 1 AS x").to_arrow_table()

    return node


ASSETS = [_node(i) for i in range(NODES)]
defs = Definitions(
    assets=ASSETS,
    jobs=[define_asset_job("plain10", selection=[a.key for a in ASSETS])],
    executor=build_executor(active_profile()),
)
