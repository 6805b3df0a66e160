"""The gate as blocking asset checks on the model out (Dagster's project_ml deployment gate).

One check per concern, all blocking with ERROR severity, so a failure stops every stage
downstream of the model in the same run and the UI shows which one failed and why:

    model_card      the card is there with every field the policy requires
    metric_<name>   one per bound: "sharpe 0.71 < 1.0 (>= 1.0 required)"
    reproducible    a retrain from the card gives the same artifact hash

They run as one step (one read of the evidence, at most one retrain); each can still be
executed on its own from the UI. A refusal is appended to the audit trail here, naming the
first stage; promotions are appended by the stage assets (gates/stages.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    multi_asset_check,
)

from quantos_assets.gates.decisions import Decision, record_decision
from quantos_assets.gates.evidence import Materialized, latest, read_metrics
from quantos_assets.gates.policy import EffectiveGate
from quantos_assets.gates.reproducibility import prove_reproducible
from quantos_assets.spec.bounds import judge
from quantos_assets.spec.derived_names import CARD_CHECK, REPRODUCIBLE_CHECK, gate_check_name
from quantos_assets.spec.models import DagSpec
from quantos_assets.trainers.model_card import missing_fields

RESOURCE_KEYS = frozenset({"artifact_store", "io_manager", "ray", "audit"})


def metric_check(metric: str) -> str:
    return f"metric_{metric}"


def gate_check_keys(spec: DagSpec, gate: EffectiveGate) -> list[AssetCheckKey]:
    key = AssetKey([spec.pipeline_id, gate.model])
    names = [CARD_CHECK, *(metric_check(b.bound.metric) for b in gate.bounds), REPRODUCIBLE_CHECK]
    return [AssetCheckKey(key, n) for n in names]


def build_gate_checks(
    spec: DagSpec, gate: EffectiveGate, spec_sha256: str | None, op_tags: Mapping[str, Any]
) -> AssetChecksDefinition:
    model_key = AssetKey([spec.pipeline_id, gate.model])
    metrics_key = AssetKey([spec.pipeline_id, gate.metrics])
    by_metric = {b.bound.metric: b for b in gate.bounds}
    policy = gate.policy_source
    specs = [
        AssetCheckSpec(
            CARD_CHECK,
            asset=model_key,
            blocking=True,
            description=f"Model card with {', '.join(gate.card_fields) or 'any fields'} ({policy})",
        ),
        *(
            AssetCheckSpec(
                metric_check(metric),
                asset=model_key,
                blocking=True,
                additional_deps=[metrics_key],
                description=f"{b.bound} in {gate.metrics} "
                + ("(the spec's bound)" if b.origin == "spec" else f"(firm-wide, {policy})"),
            )
            for metric, b in by_metric.items()
        ),
        AssetCheckSpec(
            REPRODUCIBLE_CHECK,
            asset=model_key,
            blocking=True,
            description=(
                "Retraining with the card's seed and training snapshot gives the same artifact "
                "sha256"
            ),
        ),
    ]

    @multi_asset_check(
        specs=specs,
        name=gate_check_name(spec.pipeline_id),
        can_subset=True,
        required_resource_keys=set(RESOURCE_KEYS),
        op_tags=dict(op_tags),
        description=(
            f"Promotion gate of {model_key.to_user_string()}: blocks {', '.join(gate.stages)}"
        ),
    )
    def _gate(context):  # context unannotated: see [tool.mypy]
        selected = {k.name for k in context.selected_asset_check_keys}
        model = latest(context.instance, model_key)
        results = list(_judge(context, selected, model, metrics_key, gate))
        failed = [r for r in results if not r.passed]
        if failed:
            record_decision(
                context,
                Decision(
                    spec=spec,
                    spec_sha256=spec_sha256,
                    model=gate.model,
                    stage=gate.stages[0],
                    promoted=False,
                    detail="; ".join(str(r.description) for r in failed),
                    sha256=model.sha256 if model else None,
                    evidence={"failed_checks": sorted(str(r.check_name) for r in failed)},
                ),
            )
        yield from results

    return _gate


def _judge(
    context: AssetCheckExecutionContext,
    selected: set[str],
    model: Materialized | None,
    metrics_key: AssetKey,
    gate: EffectiveGate,
) -> Iterator[AssetCheckResult]:
    if model is None:
        for name in sorted(selected):
            yield _result(name, False, f"{gate.model} has never been materialized")
        return
    resources = context.resources
    if CARD_CHECK in selected:
        missing = missing_fields(model.card, list(gate.card_fields))
        if model.card is None:
            yield _result(
                CARD_CHECK, False, f"{gate.model} has no model card (its node recorded none)"
            )
        elif missing:
            yield _result(
                CARD_CHECK,
                False,
                f"the model card is missing {', '.join(missing)} (required by "
                f"{gate.policy_source})",
                {"missing": missing},
            )
        else:
            yield _result(
                CARD_CHECK, True, f"the model card has all {len(gate.card_fields)} required fields"
            )
    wanted = [b for b in gate.bounds if metric_check(b.bound.metric) in selected]
    if wanted:
        metrics, problem = read_metrics(
            resources.artifact_store, model, latest(context.instance, metrics_key)
        )
        for b in wanted:
            name = metric_check(b.bound.metric)
            if metrics is None:
                yield _result(name, False, problem)
                continue
            verdict = judge(b.bound, metrics)
            yield _result(
                name,
                verdict.passed,
                verdict.reason,
                {
                    "measured": verdict.measured if verdict.measured is not None else "missing",
                    "bound": str(b.bound),
                    "bound_from": "spec" if b.origin == "spec" else gate.policy_source,
                },
            )
    if REPRODUCIBLE_CHECK in selected:
        proof = prove_reproducible(
            model, resources.artifact_store, resources.io_manager, resources.ray, context.log
        )
        yield _result(REPRODUCIBLE_CHECK, proof.passed, proof.reason, proof.metadata)


def _result(
    name: str, passed: bool, reason: str, metadata: Mapping[str, Any] | None = None
) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=reason,
        metadata={"reason": reason, **(metadata or {})},
    )
