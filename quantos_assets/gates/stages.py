"""One asset per promotion stage (staging -> canary -> prod), downstream of the gate.

Each stage depends on the model (so the blocking checks stop it in the same run) and on
the stage before it. The blocking checks only act within a run, so a stage also verifies
the record before promoting: every gate check's latest evaluation passed on the model's
latest materialization, and the previous stage holds that same artifact. Selecting
`prod` alone in the UI therefore cannot skip canary or promote an unchecked retrain.

Promoting writes the release record `releases/{pipeline_id}/{stage}.json` in the object
store (what serving reads: model URI, sha256, card, evidence) after the audit record,
never before: a promotion that could not be audited does not happen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from quantos_assets.gates.decisions import Decision, record_decision
from quantos_assets.gates.evidence import Materialized, latest
from quantos_assets.gates.policy import EffectiveGate
from quantos_assets.spec.derived_names import PROMOTED
from quantos_assets.spec.models import DagSpec
from quantos_assets.trainers.model_card import training_snapshot
from resources.iceberg_maintenance import release_pin


def stage_key(spec: DagSpec, stage: str) -> AssetKey:
    return AssetKey([spec.pipeline_id, PROMOTED, stage])


def release_path(spec: DagSpec, stage: str) -> str:
    return f"releases/{spec.pipeline_id}/{stage}.json"


def build_stage_assets(
    spec: DagSpec,
    gate: EffectiveGate,
    check_keys: Sequence[AssetCheckKey],
    spec_sha256: str | None,
    attrs: Mapping[str, Any],
) -> list[AssetsDefinition]:
    """`attrs`: owners and tags shared with the pipeline's other assets."""
    model_key = AssetKey([spec.pipeline_id, gate.model])
    stages: list[AssetsDefinition] = []
    for i, stage in enumerate(gate.stages):
        previous = gate.stages[i - 1] if i else None
        stages.append(
            _stage_asset(
                spec, gate, stage, previous, model_key, list(check_keys), spec_sha256, attrs
            )
        )
    return stages


def _stage_asset(
    spec: DagSpec,
    gate: EffectiveGate,
    stage: str,
    previous: str | None,
    model_key: AssetKey,
    check_keys: list[AssetCheckKey],
    spec_sha256: str | None,
    attrs: Mapping[str, Any],
) -> AssetsDefinition:
    deps = [model_key, *([stage_key(spec, previous)] if previous else [])]
    after = f"after {previous}" if previous else "first stage"

    @asset(
        key=stage_key(spec, stage),
        deps=deps,
        group_name=spec.pipeline_id,
        required_resource_keys={"artifact_store", "audit", "io_manager"},
        description=(
            f"`{gate.model}` promoted to {stage} ({after}): materializes only when every gate "
            "check passed on the model's latest materialization"
        ),
        **attrs,
    )
    def _promote(context):  # context unannotated: see [tool.mypy]
        model = latest(context.instance, model_key)
        problems = _refusals(context, model, check_keys, spec, previous)

        def decide(promoted: bool, detail: str, evidence: dict[str, Any] | None = None) -> None:
            record_decision(
                context,
                Decision(
                    spec=spec,
                    spec_sha256=spec_sha256,
                    model=gate.model,
                    stage=stage,
                    promoted=promoted,
                    detail=detail,
                    sha256=model.sha256 if model else None,
                    evidence=evidence or {},
                ),
            )

        if problems or model is None:
            reason = f"{stage} refused for {model_key.to_user_string()}: {'; '.join(problems)}"
            decide(False, reason)
            raise Failure(description=reason, allow_retries=False)
        assert model.sha256 is not None and model.uri is not None
        decide(
            True,
            f"{model_key.to_user_string()} sha256 {model.sha256[:12]} promoted to {stage}",
            {"model_run_id": model.run_id},
        )
        record = {
            "pipeline_id": spec.pipeline_id,
            "model": model_key.to_user_string(),
            "stage": stage,
            "previous_stage": previous,
            "model_uri": model.uri,
            "sha256": model.sha256,
            "model_run_id": model.run_id,
            "promoted_by_run": context.run.run_id,
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_card": model.card,
        }
        uri = context.resources.artifact_store.put(
            release_path(spec, stage), json.dumps(record, indent=2, sort_keys=True).encode()
        )
        _pin_training_data(context, spec, stage, model.card)
        return MaterializeResult(
            metadata={
                "sha256": model.sha256,
                "model_uri": MetadataValue.path(model.uri),
                "release": MetadataValue.path(uri),
                "model_run_id": model.run_id,
                "stage": stage,
            }
        )

    return _promote


def _pin_training_data(
    context: AssetExecutionContext, spec: DagSpec, stage: str, card: Any
) -> None:
    """Tag the snapshot the promoted model trained on, so that the lake's retention keeps it
    for as long as this stage holds the model (the stage's next promotion moves the tag).
    Not a reason to refuse the promotion: lake maintenance also pins it from the release
    record."""
    pin = getattr(context.resources.io_manager, "pin_snapshot", None)
    if pin is None:  # a test's own IO manager has no lake
        return
    try:
        snapshot = training_snapshot(card or {})
        namespace, _, name = snapshot.table.partition(".")
        pin((namespace, name), snapshot.snapshot_id, release_pin(spec.pipeline_id, stage))
    except Exception as err:  # noqa: BLE001 - ModelCardError, LakeIOError, an unreachable lake
        context.log.warning(
            f"the {stage} model's training data is not pinned yet ({str(err).splitlines()[0]}); "
            "lake maintenance pins it from the release record"
        )


def _refusals(
    context: AssetExecutionContext,
    model: Materialized | None,
    check_keys: list[AssetCheckKey],
    spec: DagSpec,
    previous: str | None,
) -> list[str]:
    """Why this stage may not take the model's latest materialization (empty: it may)."""
    if model is None:
        return ["the model has never been materialized"]
    if model.sha256 is None or model.uri is None:
        return ["the model's materialization records no artifact URI and sha256"]
    problems: list[str] = []
    for key in check_keys:
        record = context.instance.get_latest_asset_check_evaluation_record(key)
        evaluation = _evaluation(record)
        if evaluation is None:
            problems.append(f"{key.name} has not run on the model")
            continue
        target = evaluation.target_materialization_data
        if target is None or target.storage_id != model.storage_id:
            problems.append(f"{key.name} has not run on the latest model (run {model.run_id[:8]})")
        elif not evaluation.passed:
            problems.append(str(evaluation.description or f"{key.name} failed"))
    if previous is not None:
        held = latest(context.instance, stage_key(spec, previous))
        if held is None:
            problems.append(f"{previous} holds no model yet: promote to {previous} first")
        elif held.sha256 != model.sha256:
            problems.append(
                f"{previous} holds sha256 {str(held.sha256)[:12]}, not this model's "
                f"{model.sha256[:12]}: "
                f"promote it to {previous} first"
            )
    return problems


def _evaluation(record: Any) -> Any:
    """The AssetCheckEvaluation of an execution record, if it finished."""
    event = getattr(record, "event", None)
    data = getattr(getattr(event, "dagster_event", None), "event_specific_data", None)
    return data if hasattr(data, "passed") else None
