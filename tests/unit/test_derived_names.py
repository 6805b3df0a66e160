"""`derived_names` lists exactly the names the code location defines for a spec.

The registry checks new specs against every registered one with `derived_names`, never by
building Dagster definitions; if a builder named something the list does not know, two
specs could collide unseen and take the location down. So this builds a real location
(every example spec, plus one with two lag and two arrivals triggers, a node without outs
and an external node, and two reading one external table) with every optional sensor
configured, and compares namespace by namespace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import AssetsDefinition, DynamicPartitionsDefinition
from dagster._core.definitions.utils import DISALLOWED_NAMES

from definitions.assemble import build_definitions
from quantos_assets.spec.derived_names import (
    DAGSTER_RESERVED_NAMES,
    KAFKA_LAG_ASSET,
    NAMESPACES,
    PLATFORM_JOBS,
    PLATFORM_SENSORS,
    derived_names,
    lag_sensor_name,
    platform_conflict,
    shared_names,
)
from quantos_assets.spec_registry import scan_specs
from quantos_assets.spec_rules.firm import FIRM_RULES
from resources.profile import active_profile

REPO = Path(__file__).resolve().parents[2]

LAGGED = """\
version: 1
pipeline_id: lagged
triggers:
  - kafka_lag: {topic: x_1, group: g, threshold: 10}
  - arrivals: {uri: "s3://vendor/bars/*.csv"}
  - kafka_lag: {topic: x, group: g, threshold: 10}
  - arrivals: {uri: "vendor/*.csv"}
nodes:
  - {id: src, kind: python_task, params: {entrypoint: "quantos_assets.tasks.noop:one_row"}, outs: \
[rows]}
  - {id: side, kind: trino_sql, params: {sql: "SELECT 1 AS x"}, ins: [rows]}
  - {id: stream, kind: flink_job, ins: [rows], outs: [live]}
"""


# Two pipelines reading one lake table: one asset in the location, no collision between them.
READERS = """\
version: 1
pipeline_id: {pid}
labels: {{team: research}}
external_inputs:
  bars: {{table: market.bars_1m}}
nodes:
  - {{id: vwap, kind: trino_sql, params: {{sql: "SELECT * FROM bars"}}, ins: [bars], outs: [vwap]}}
"""


def test_the_copy_of_dagsters_reserved_names_is_current() -> None:
    assert frozenset(DISALLOWED_NAMES) == DAGSTER_RESERVED_NAMES


def test_two_lag_triggers_never_share_a_sensor_name() -> None:
    # before: topic "x_1" first and "x" second were both p__kafka_lag_x_1
    names = {lag_sensor_name("p", topic, i) for i, topic in enumerate(["x_1", "x", "x.1"])}
    assert names == {"p__kafka_lag_x_1", "p__kafka_lag1_x", "p__kafka_lag2_x_1"}


def test_derived_names_are_the_names_the_location_defines(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "specs", specs)
    (specs / "lagged.yaml").write_text(LAGGED)
    for pid in ("reader_a", "reader_b"):
        (specs / f"{pid}.yaml").write_text(READERS.format(pid=pid))
    # every optional sensor on: Kafka submissions and lag, notifications, lineage (a file)
    monkeypatch.setenv("QUANTOS_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("QUANTOS_NOTIFY_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("QUANTOS_LINEAGE", "file")

    defs = build_definitions(active_profile(), specs, dbt=False)
    scan = scan_specs(specs)
    assert not scan.invalid and len(scan.valid) == 6
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = [
        a
        for a in [*(defs.assets or []), *(defs.asset_checks or [])]
        if isinstance(a, AssetsDefinition)
    ]
    built: dict[str, set[str]] = {
        "asset key": {k.to_user_string() for k in graph.get_all_asset_keys()},
        "op": {a.node_def.name for a in assets},
        "job": {j.name for j in repo.get_all_jobs() if not j.name.startswith("__ASSET_JOB")},
        "schedule/sensor": {s.name for s in repo.schedule_defs}
        | {s.name for s in repo.sensor_defs},
        "group": {graph.get(k).group_name for k in graph.get_all_asset_keys()},
        "asset check": {f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys},
        "partitions set": {
            str(a.partitions_def.name)
            for a in assets
            if isinstance(a.partitions_def, DynamicPartitionsDefinition)
        },
    }
    derived: dict[str, set[str]] = {ns: set() for ns in NAMESPACES}
    shared: dict[str, set[str]] = {ns: set() for ns in NAMESPACES}
    for loaded in scan.valid:
        for n in derived_names(loaded.spec, FIRM_RULES.gate_floor()):
            derived[n.namespace].add(n.name)
        for n in shared_names(loaded.spec):
            shared[n.namespace].add(n.name)
    # the external table's asset and group: the platform's, shared by both readers
    assert shared["asset key"] == {"market/bars_1m"} and shared["group"] == {"external"}
    for ns in NAMESPACES:
        built[ns] -= shared[ns]
    assert {"lagged__arrivals1", "lagged__arrivals3", "lagged__kafka_lag2_x"} <= built[
        "schedule/sensor"
    ]
    # a lag trigger's observations land on [pipeline, kafka_lag]: an event, not a definition
    assert "lagged/" + KAFKA_LAG_ASSET in derived["asset key"]
    derived["asset key"].discard("lagged/" + KAFKA_LAG_ASSET)
    assert built["schedule/sensor"] - derived["schedule/sensor"] == PLATFORM_SENSORS
    built["schedule/sensor"] -= PLATFORM_SENSORS
    assert built["job"] - derived["job"] == PLATFORM_JOBS
    built["job"] -= PLATFORM_JOBS
    for ns in NAMESPACES:
        assert built[ns] == derived[ns], ns
    # and none of them is a name the platform keeps for itself
    assert not [
        (ns, name)
        for ns, names in derived.items()
        for name in names
        if platform_conflict(ns, name)  # type: ignore[arg-type]
    ]
