"""What a spec compiles to: keys, deps, groups, retries, tags, placement, jobs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from dagster import AssetKey, AssetsDefinition, AssetSpec
from profiles import LOCAL

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.placement import PlacementError, choose_pool
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec.models import Priority, Qos, Resources
from quantos_assets.spec_rules.firm import load_spec_text

SPEC = textwrap.dedent(
    """
    version: 1
    pipeline_id: demo
    labels: {owner: research, project: xs}
    slo:
      max_runtime: "2h"
      retry: {max_attempts: 3, backoff_sec: 60}
      priority: high
      qos: spot_ok
    resources:
      default: {cpu: "4", mem: "16Gi"}
    nodes:
      - id: load
        kind: trino_sql
        params: {sql: "select 1 as x"}
        outs: [raw]
      - id: stream
        kind: flink_job
        outs: [ticks]
      - id: feat
        kind: python_task
        params: {entrypoint: "m:f"}
        ins: [raw, ticks]
        outs: [features, stats]
      - id: train
        kind: ray_job
        params: {trainer: ridge}
        resources: {gpu: 1}
        ins: [features]
        outs: [model_uri, metrics_json]
      - id: report
        kind: python_task
        params: {entrypoint: "m:g"}
        outs: [summary]
    edges:
      - {from: load, to: feat}
      - {from: train, to: report}
    """
)


@pytest.fixture(scope="module")
def pipeline():
    return build_pipeline(load_spec_text(SPEC, "demo.yaml", "yaml"), LOCAL)


def _by_node(pipeline):
    out = {}
    for item in pipeline.assets:
        if isinstance(item, AssetsDefinition):
            out[item.op.tags["quantos/node_id"]] = item
        else:
            out[item.tags["quantos/node"]] = item
    return out


def test_one_multi_asset_per_node_keyed_by_pipeline_and_out(pipeline) -> None:
    nodes = _by_node(pipeline)
    assert set(nodes) == {"load", "stream", "feat", "train", "report"}
    assert set(nodes["feat"].keys) == {AssetKey(["demo", "features"]), AssetKey(["demo", "stats"])}
    assert all(
        spec.group_name == "demo"
        for item in pipeline.assets
        for spec in (item.specs if isinstance(item, AssetsDefinition) else [item])
    )


def test_deps_from_ins_and_edges(pipeline) -> None:
    nodes = _by_node(pipeline)
    feat_deps = {d.asset_key for s in nodes["feat"].specs for d in s.deps}
    assert feat_deps == {AssetKey(["demo", "raw"]), AssetKey(["demo", "ticks"])}
    # only data produced by runnable nodes is loaded; the flink out is a dependency only
    loaded = {d.name for d in nodes["feat"].op.input_defs if not d.dagster_type.is_nothing}
    assert loaded == {"raw"}
    # an edge without data still orders the nodes: report runs after train
    report_deps = {d.asset_key for s in nodes["report"].specs for d in s.deps}
    assert report_deps == {AssetKey(["demo", "model_uri"]), AssetKey(["demo", "metrics_json"])}


def test_streaming_nodes_are_external_assets(pipeline) -> None:
    stream = _by_node(pipeline)["stream"]
    assert isinstance(stream, AssetSpec)
    assert "flink" in stream.kinds


def test_retry_policy_counts_the_first_attempt(pipeline) -> None:
    policy = _by_node(pipeline)["train"].op.retry_policy
    assert policy.max_retries == 2 and policy.delay == 60


def test_placement_tags(pipeline) -> None:
    nodes = _by_node(pipeline)
    # gpu -> gpu family; priority high -> on-demand despite spot_ok
    assert nodes["train"].op.tags["quantos/pool"] == "gpu"
    assert nodes["load"].op.tags["quantos/pool"] == "cpu"
    assert pipeline.pools == {"load": "cpu", "feat": "cpu", "train": "gpu", "report": "cpu"}


def test_owners_kinds_and_tags_from_labels(pipeline) -> None:
    feat = _by_node(pipeline)["feat"]
    spec = next(iter(feat.specs))
    assert list(spec.owners) == ["team:research"]
    assert spec.tags["project"] == "xs"
    assert "python" in spec.kinds


def test_job_tags_from_slo(pipeline) -> None:
    assert pipeline.job.name == "demo"
    assert pipeline.job.tags["dagster/max_runtime"] == "7200"
    assert int(pipeline.job.tags["dagster/priority"]) > 0


def test_runtime_params_become_run_tags() -> None:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "seed_runtime_params.json"
    params = load_runtime_params(fixture)
    tags = runtime_run_tags(params)
    assert tags["quantos/submission_id"] == "sub-2025-10-29-001"
    assert tags["quantos/env"] == "staging"
    assert tags["quantos/label.project"] == "xs"
    assert tags["quantos/team"] == "research"
    assert tags["quantos/secrets_scope"] == "binance-readonly,s3-lake-ro"
    assert tags["quantos/compute_pool"] == "gpu_spot"


@pytest.mark.parametrize(
    ("res", "qos", "prio", "pool"),
    [
        (Resources(cpu=4), Qos.spot_ok, Priority.normal, "cpu_spot"),
        (Resources(cpu=4), Qos.on_demand, Priority.normal, "cpu"),
        (Resources(cpu=4), Qos.spot_ok, Priority.critical, "cpu"),
        (Resources(gpu=1), Qos.spot_ok, Priority.low, "gpu_spot"),
        (Resources(gpu=2), Qos.on_demand, Priority.normal, "gpu"),
    ],
)
def test_pool_rules(res, qos, prio, pool) -> None:
    assert choose_pool(res, qos, prio) == pool


def test_unsatisfiable_request_is_a_clear_error() -> None:
    with pytest.raises(PlacementError, match="gpu 64 > max 8"):
        choose_pool(Resources(gpu=64), Qos.on_demand, Priority.normal)
    with pytest.raises(PlacementError, match="compute_pool 'tpu' does not exist"):
        choose_pool(Resources(cpu=1), Qos.on_demand, Priority.normal, requested_pool="tpu")


def test_a_chain_deeper_than_the_recursion_limit_still_builds_its_job() -> None:
    """Dagster walks job steps recursively; a 1,200-node chain (past Python's default
    recursion limit of 1,000) must still resolve."""
    from dagster import Definitions, mem_io_manager

    nodes = "\n".join(
        f"  - {{id: n{i}, kind: trino_sql, params: {{sql: 'select 1'}}, "
        f"ins: [{'o' + str(i - 1) if i else ''}], outs: [o{i}]}}".replace("ins: [], ", "")
        for i in range(1200)
    )
    text = f"version: 1\npipeline_id: deep\nnodes:\n{nodes}\n"
    pipeline = build_pipeline(load_spec_text(text, "deep.yaml", "yaml"), LOCAL)
    defs = Definitions(
        assets=pipeline.assets,
        jobs=[pipeline.job],
        resources={
            "io_manager": mem_io_manager,
            "sql_engine": object(),
            "artifact_store": object(),
        },
    )
    job = defs.resolve_job_def("deep")
    assert len(job.graph.node_defs) == 1200


def test_a_request_no_pool_can_take_is_a_validation_error_with_its_line() -> None:
    from quantos_assets.spec.errors import SpecError

    text = (
        "version: 1\npipeline_id: big\nnodes:\n"
        "  - id: train\n    kind: ray_job\n    params: {trainer: ridge}\n"
        "    resources: {gpu: 64}\n    outs: [m]\n"
        "  - id: crd\n    kind: custom_crd\n    params: {manifest: {kind: RayJob}}\n    outs: [j]\n"
    )
    with pytest.raises(SpecError) as err:
        load_spec_text(text, "big.yaml", "yaml")
    lines = err.value.lines
    assert any(
        line.startswith("big.yaml:7: nodes[0].resources: no pool") and "gpu 64 > max 8" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("big.yaml:11: nodes[1].params") and "apiVersion" in line for line in lines
    ), lines
