"""Rules that need more than the spec: node pools and kind-specific parameters.

A spec that no pool can take, whose custom_crd manifest is malformed, or whose
ray_job has an unknown mode or a predict node without a model and a table to read, is as
invalid as one with a cycle: `quantos validate` must say so with a line number,
not the first run. So is one that asks a step to leave its sandbox in a way the
text alone shows: a sql_uri outside the spec's folder and the artifact store, or
a python_task env that changes how the interpreter or the loader start.
"""

from __future__ import annotations

from quantos_assets.spec.models import EXTERNAL_KINDS, DagSpec, NodeKind


def check_deployable(spec: DagSpec) -> list[tuple[str, str]]:
    # Imported here: placement reads deploy/pools.yaml, custom_crd pulls in Dagster.
    from quantos_assets.kinds.custom_crd import validate_manifest
    from quantos_assets.kinds.ray_job import search_problems
    from quantos_assets.kinds.ray_predict import mode_problems
    from quantos_assets.kinds.sql_sources import sql_uri_problem, sql_uris
    from quantos_assets.kinds.step_environment import reserved_env_name
    from quantos_assets.placement import (
        PlacementError,
        RayWorkersError,
        check_ray_workers,
        choose_pool,
        load_pools,
    )

    pools = load_pools()
    problems: list[tuple[str, str]] = []
    for i, node in enumerate(spec.nodes):
        if node.kind in EXTERNAL_KINDS:
            continue
        where = f"nodes[{i}].resources" if node.resources is not None else "resources.default"
        try:
            choose_pool(
                spec.effective_resources(node), spec.slo.qos, spec.slo.priority, pools=pools
            )
        except PlacementError as err:
            problems.append((where, str(err)))
        if node.kind is NodeKind.ray_job:
            try:
                check_ray_workers(spec, node)
            except RayWorkersError as err:
                own_gpu = node.resources is not None and node.resources.gpu is not None
                gpu_from_default = err.field == "resources.gpu" and not own_gpu
                problems.append(
                    (
                        "resources.default.gpu" if gpu_from_default else f"nodes[{i}].{err.field}",
                        str(err),
                    )
                )
            problems.extend(mode_problems(spec, i))
        if node.kind is NodeKind.ray_job and "search" in node.params:
            problems.extend(
                (f"nodes[{i}].params.search{field}", message)
                for field, message in search_problems(node.params)
            )
        if node.kind is NodeKind.custom_crd:
            for message in validate_manifest(node.params):
                problems.append((f"nodes[{i}].params", message))
        if node.kind in (NodeKind.trino_sql, NodeKind.spark_sql):
            for field, uri in sql_uris(node.params):
                problem = sql_uri_problem(uri)
                if problem is not None:
                    problems.append((f"nodes[{i}].params.{field}", problem))
        if node.kind is NodeKind.python_task and "entrypoint" in node.params:
            for name in node.env:
                if reserved_env_name(name):
                    problems.append((f"nodes[{i}].env.{name}", _RESERVED_ENV))
    return problems


_RESERVED_ENV = (
    "a python_task's env may not set PATH, HOME, TMPDIR, BROWSER or PYTHON*, LD_*, DYLD_*, "
    "DAGSTER_*, "
    "QUANTOS_SCOPE__* names: the sandbox sets them, or they run code before the entrypoint does"
)
