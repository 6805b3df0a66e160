"""A plain description of what a spec compiles to, read off the Dagster objects.

Used by `quantos compile` and by the snapshot tests: describing the built
AssetsDefinitions (not re-deriving from the spec) means the snapshot catches
any change in what Dagster will actually run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from dagster import AssetsDefinition, AssetSpec, Definitions

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
        (
            a.partitions_def
            for a in pipeline.assets
            if isinstance(a, AssetsDefinition) and a.partitions_def
        ),
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


def describe_location(defs: Definitions) -> dict[str, Any]:
    """The whole code location as Dagster will load it: assets (deps, op, op tags with the
    `dagster-k8s/config` decoded), checks, jobs and what they select, schedules, sensors,
    resource keys and the executor. Read off the built repository, so a change in what a
    profile builds (a pod's resources, a job's selection, a sensor appearing) is a diff."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=_key):
        node = graph.get(key)
        item = node.assets_def
        assets[_key(key)] = {
            "deps": sorted(_key(p) for p in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "op": item.op.name if item.is_executable and item.node_def is not None else None,
            "op_tags": _tags(item.op.tags)
            if item.is_executable and item.node_def is not None
            else None,
            "partitions": getattr(item.partitions_def, "name", None)
            if item.partitions_def
            else None,
        }
    checks = {
        f"{_key(k.asset_key)}:{k.name}": {"blocking": graph.get_check_spec(k).blocking}
        for k in sorted(graph.asset_check_keys, key=lambda k: (_key(k.asset_key), k.name))
    }
    jobs = {
        job.name: {
            "tags": _tags(job.tags or {}),
            "selects": sorted(_key(k) for k in job.asset_layer.selected_asset_keys),
            "executor": job.executor_def.name,
        }
        for job in sorted(repo.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {
            "interval_s": s.minimum_interval_seconds,
            "jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [],
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": {k: type(v).__name__ for k, v in sorted((defs.resources or {}).items())},
        "executor": repo.get_all_jobs()[0].executor_def.name if repo.get_all_jobs() else None,
    }


def _tags(tags: Mapping[str, Any]) -> dict[str, Any]:
    """Tags with the JSON ones (`dagster-k8s/config`) decoded, so a diff shows the field."""
    out: dict[str, Any] = {}
    for name, value in sorted(tags.items()):
        if isinstance(value, str) and value[:1] in "{[":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[name] = value
    return out
