"""A plain description of what a spec compiles to, read off the Dagster objects.

Used by `quantos compile` and by the snapshot tests: describing the built
AssetsDefinitions (not re-deriving from the spec) means the snapshot catches
any change in what Dagster will actually run.
"""
from __future__ import annotations

from typing import Any

from dagster import AssetsDefinition, AssetSpec

from quantos_assets.pipeline_assets import PipelineDefs
from resources.run_tag_keys import TAG_KIND, TAG_NODE, TAG_POOL


def _key(key: Any) -> str:
    return "/".join(key.path)


def describe_pipeline(pipeline: PipelineDefs) -> dict[str, Any]:
    assets: list[dict[str, Any]] = []
    stages = {id(a) for a in pipeline.gates.stages} if pipeline.gates else set()
    for item in pipeline.assets:
        if id(item) in stages:
            continue  # described under "gates"
        if isinstance(item, AssetSpec):
            assets.append(
                {
                    "key": _key(item.key),
                    "node": item.tags.get("quantos/node"),
                    "kind": "external",
                    "kinds": sorted(item.kinds),
                    "deps": sorted(_key(d.asset_key) for d in item.deps),
                    "pool": None,
                    "retry": None,
                    "owners": list(item.owners),
                    "tags": dict(item.tags),
                }
            )
            continue
        assert isinstance(item, AssetsDefinition)
        op_tags = item.op.tags
        retry = item.op.retry_policy
        for spec in item.specs:
            assets.append(
                {
                    "key": _key(spec.key),
                    "node": op_tags[TAG_NODE],
                    "kind": op_tags[TAG_KIND],
                    "kinds": sorted(spec.kinds),
                    "deps": sorted(_key(d.asset_key) for d in spec.deps),
                    "pool": op_tags[TAG_POOL],
                    "retry": (
                        {"max_retries": retry.max_retries, "delay_sec": retry.delay}
                        if retry
                        else None
                    ),
                    "owners": list(spec.owners),
                    "tags": dict(spec.tags),
                    **_backfill(item),
                }
            )
    partitioned = next(
        (a.partitions_def for a in pipeline.assets if isinstance(a, AssetsDefinition) and a.partitions_def),
        None,
    )
    extra = {"partitions": getattr(partitioned, "name", None)} if partitioned is not None else {}
    if pipeline.gates is not None:
        extra["gates"] = _gates(pipeline)
    return {
        **extra,
        "pipeline_id": pipeline.spec.pipeline_id,
        "job": pipeline.job.name,
        "run_tags": dict(pipeline.job.tags or {}),
        "assets": assets,
    }


def _backfill(item: AssetsDefinition) -> dict[str, Any]:
    """How a backfill runs the asset: one run per session or one ranged run."""
    if item.partitions_def is None:
        return {}
    policy = item.backfill_policy
    single = policy is not None and policy.max_partitions_per_run is None
    return {"backfill": "single_run" if single else "per_session"}


def _gates(pipeline: PipelineDefs) -> dict[str, Any]:
    """The promotion gate: its blocking checks (one step) and the stage assets after it."""
    gates = pipeline.gates
    assert gates is not None
    checks = gates.checks
    return {
        "model": gates.gate.model,
        "metrics": gates.gate.metrics,
        "checks_op": checks.node_def.name,
        "checks_pool": checks.node_def.tags.get(TAG_POOL),
        "checks": [
            {
                "key": f"{_key(spec.asset_key)}:{spec.name}",
                "blocking": spec.blocking,
                "description": spec.description,
            }
            for spec in sorted(checks.check_specs, key=lambda c: c.name)
        ],
        "stages": [
            {"key": _key(spec.key), "deps": sorted(_key(d.asset_key) for d in spec.deps)}
            for stage in gates.stages
            for spec in stage.specs
        ],
    }
