"""Loading a spec under the firm's rules: what `quantos validate`, the gateway, the Kafka
sensor, the registry and the code location all mean by "a valid spec"."""

from __future__ import annotations

from pathlib import Path

from quantos_assets.gates.policy import load_policy
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import Format, LoadedSpec, load_spec_text_under, load_spec_under
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec.outside_rules import GateFloor, Problem
from quantos_assets.spec_rules.calendars import EXCHANGE_CALENDARS
from quantos_assets.spec_rules.deploy import check_deployable
from quantos_assets.spec_rules.gates import check_gates


class FirmRules:
    """deploy/pools.yaml, deploy/policies/promotion.yaml (each read when it changes), the
    exchange calendars and the kinds' parameter rules."""

    calendars = EXCHANGE_CALENDARS

    def gate_floor(self) -> GateFloor | None:
        try:
            policy = load_policy().policy
        except SpecError:
            return None
        return GateFloor(require=tuple(sorted(policy.require)), stages=tuple(policy.stages))

    def gate_problems(self, spec: DagSpec) -> list[Problem]:
        return check_gates(spec)

    def deploy_problems(self, spec: DagSpec) -> list[Problem]:
        return check_deployable(spec)


FIRM_RULES = FirmRules()


def load_spec(path: str | Path) -> LoadedSpec:
    """Load and fully check a spec file (.yaml, .yml or .json): SpecError with every problem."""
    return load_spec_under(path, FIRM_RULES)


def load_spec_text(text: str, source: str, fmt: Format) -> LoadedSpec:
    """Load and fully check a spec held in memory; `source` names it in error lines."""
    return load_spec_text_under(text, source, fmt, FIRM_RULES)
