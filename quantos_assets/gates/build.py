"""A spec's `gates` block as Dagster definitions: the blocking checks and the stage assets.

The one entry point pipeline_assets calls; everything about promotion stays in this
package, so translation only learns "these checks and assets belong to the pipeline".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import AssetCheckKey, AssetChecksDefinition, AssetsDefinition

from quantos_assets.gates.checks import build_gate_checks, gate_check_keys
from quantos_assets.gates.policy import EffectiveGate, effective_gate, load_policy
from quantos_assets.gates.stages import build_stage_assets
from quantos_assets.k8s.step_config import with_audit_key
from quantos_assets.spec.loader import LoadedSpec
from resources.run_tag_keys import TAG_KIND

# The Secret holding QUANTOS_AUDIT_KEY (docs/deployment.md). Only the steps that append gate
# decisions to the audit trail get it: a step running a team's code never holds the key that
# would let it forge or re-sign records.


@dataclass(frozen=True)
class GateDefs:
    gate: EffectiveGate
    checks: AssetChecksDefinition
    stages: list[AssetsDefinition]
    check_keys: list[AssetCheckKey]


def build_gates(
    loaded: LoadedSpec, producer_op_tags: Mapping[str, Any], attrs: Mapping[str, Any]
) -> GateDefs | None:
    """None for a spec without gates. `producer_op_tags`: the model node's op tags (pool,
    k8s config), which the checks reuse because the retrain needs the same room."""
    spec = loaded.spec
    if spec.gates is None:
        return None
    gate = effective_gate(spec.gates, load_policy())
    keys = gate_check_keys(spec, gate)
    checks = build_gate_checks(
        spec, gate, loaded.sha256, with_audit_key({**producer_op_tags, TAG_KIND: "gate"})
    )
    stages = build_stage_assets(
        spec, gate, keys, loaded.sha256, {**attrs, "op_tags": with_audit_key({TAG_KIND: "gate"})}
    )
    return GateDefs(gate=gate, checks=checks, stages=stages, check_keys=keys)
