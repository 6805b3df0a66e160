"""The admission policy: the ordered rules every path asks, and `admit()`.

Order matters only for which refusal a request that breaks several rules hears first: who
owns the pipeline, then what the request may carry, then what it may cost right now (so a
team at its quota is told to wait only for a request it could otherwise make).
"""

from __future__ import annotations

from collections.abc import Sequence

from quantos_assets.admission.refusal import Refusal
from quantos_assets.admission.request import AdmissionRequest
from quantos_assets.admission.rules import (
    ActiveRuns,
    AllowedEntrypoints,
    GrantedReads,
    GrantedScopes,
    PipelineOwner,
    Rule,
    SubmissionRate,
    TeamLabel,
    UniqueNames,
)

POLICY: tuple[Rule, ...] = (
    PipelineOwner(),
    TeamLabel(),
    UniqueNames(),
    AllowedEntrypoints(),
    GrantedReads(),
    GrantedScopes(),
    ActiveRuns(),
    SubmissionRate(),
)


def admit(request: AdmissionRequest, rules: Sequence[Rule] = POLICY) -> Refusal | None:
    """The first refusal of the rules that judge this action, or None: admitted."""
    for rule in rules:
        if rule.applies(request):
            refused = rule.check(request)
            if refused is not None:
                return refused
    return None
