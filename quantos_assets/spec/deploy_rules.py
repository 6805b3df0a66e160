"""Rules that need more than the spec: node pools and kind-specific parameters.

A spec that no pool can take, or whose custom_crd manifest is malformed, is as
invalid as one with a cycle: `quantos validate` must say so with a line number,
not the first run.
"""
from __future__ import annotations

from quantos_assets.spec.models import EXTERNAL_KINDS, DagSpec, NodeKind


def check_deployable(spec: DagSpec) -> list[tuple[str, str]]:
    # Imported here: placement reads deploy/pools.yaml, custom_crd pulls in Dagster.
    from quantos_assets.kinds.custom_crd import validate_manifest
    from quantos_assets.placement import PlacementError, choose_pool, load_pools

    pools = load_pools()
    problems: list[tuple[str, str]] = []
    for i, node in enumerate(spec.nodes):
        if node.kind in EXTERNAL_KINDS:
            continue
        where = f"nodes[{i}].resources" if node.resources is not None else "resources.default"
        try:
            choose_pool(spec.effective_resources(node), spec.slo.qos, spec.slo.priority, pools=pools)
        except PlacementError as err:
            problems.append((where, str(err)))
        if node.kind is NodeKind.custom_crd:
            for message in validate_manifest(node.params):
                problems.append((f"nodes[{i}].params", message))
    return problems
