"""Every gate decision, promoted or refused, appended to the audit trail.

One record per decision and stage, subject = the model's asset key, so
`quantos audit show --subject PIPELINE/MODEL` is the model's promotion history; the
stage, the artifact hash and the run are in the record's params. A decision that cannot
be written is not taken: the caller promotes only after `record_decision` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagster import AssetCheckExecutionContext, AssetExecutionContext

from quantos_assets.spec.models import DagSpec
from resources.run_tag_keys import TAG_SUBMISSION, TAG_TEAM, TAG_VERSION

ACTOR = "quantos-gate"
ACTION = "promote"
PROMOTED = "promoted"
REFUSED = "refused"


@dataclass(frozen=True)
class Decision:
    spec: DagSpec
    spec_sha256: str | None
    model: str  # the model out
    stage: str
    promoted: bool
    detail: str  # one line: the reason, or what was promoted
    sha256: str | None  # the model artifact's
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{self.spec.pipeline_id}/{self.model}"


def record_decision(
    context: AssetExecutionContext | AssetCheckExecutionContext, decision: Decision
) -> None:
    tags = context.run.tags
    verdict = PROMOTED if decision.promoted else REFUSED
    context.log.info(f"gate {decision.subject} -> {decision.stage}: {verdict}: {decision.detail}")
    trail = context.resources.audit.log()
    if trail is None:
        context.log.warning(
            "no audit trail configured (QUANTOS_GATEWAY_DB): this decision is in the run's event "
            "log only"
        )
        return
    labels = decision.spec.labels
    trail.append(
        actor=ACTOR,
        team=tags.get(TAG_TEAM) or labels.get("team") or labels.get("owner") or "-",
        action=ACTION,
        subject=decision.subject,
        spec_sha256=decision.spec_sha256,
        params={
            "stage": decision.stage,
            "sha256": decision.sha256,
            "run_id": context.run.run_id,
            **({"submission_id": tags[TAG_SUBMISSION]} if TAG_SUBMISSION in tags else {}),
            **({"version": tags[TAG_VERSION]} if TAG_VERSION in tags else {}),
            **decision.evidence,
        },
        decision=verdict,
        detail=decision.detail,
    )
