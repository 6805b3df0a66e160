"""Only the steps that append gate decisions get the audit key's Secret (staging/prod pods).

A step running a team's code never holds QUANTOS_AUDIT_KEY: with it, the team could sign
forged records. The key reaches the gate steps through their `dagster-k8s/config` op tag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from profiles import LOCAL

from quantos_assets.k8s.step_config import AUDIT_SECRET, K8S_CONFIG_TAG
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec

GATED = Path(__file__).resolve().parents[1] / "fixtures" / "gates" / "gated_model_pass.yaml"


def _secrets(op_tags: dict[str, Any]) -> list[str]:
    config = op_tags.get(K8S_CONFIG_TAG) or {}
    config = json.loads(config) if isinstance(config, str) else config  # Dagster keeps tags as JSON
    env_from = config.get("container_config", {}).get("env_from", [])
    return [e["secret_ref"]["name"] for e in env_from]


def test_gate_checks_and_stages_get_the_audit_secret_and_no_other_step_does() -> None:
    pipeline = build_pipeline(load_spec(GATED), LOCAL)
    assert pipeline.gates is not None
    gate_ops = [pipeline.gates.checks.node_def, *(s.node_def for s in pipeline.gates.stages)]
    assert gate_ops and all(AUDIT_SECRET in _secrets(dict(op.tags)) for op in gate_ops)
    gate_names = {op.name for op in gate_ops}
    others = [
        a.node_def
        for a in pipeline.assets
        if hasattr(a, "node_def") and a.node_def.name not in gate_names
    ]
    assert others and not any(AUDIT_SECRET in _secrets(dict(op.tags)) for op in others)
