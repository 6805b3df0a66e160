"""What a spec is checked against beyond its own text: the firm's promotion policy, the node
pools, the trading calendars and the kinds' parameter rules. They are passed in by the layer
that knows them (quantos_assets/spec_rules/), so the spec contract imports none of it (the
layers contract in pyproject.toml) and a loader always says which rules it checks with: there
is no default that would let a caller skip them by forgetting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from quantos_assets.spec.models import DagSpec

Problem = tuple[str, str]  # (field path, message)


@dataclass(frozen=True)
class GateFloor:
    """What the firm's promotion policy adds to every gate: metrics bounded whatever the spec
    says, and the stages when the spec names none (it adds checks and stage assets, so the
    names a gated spec makes depend on it)."""

    require: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()


class Calendars(Protocol):
    """The trading calendars a spec may name (a schedule's or partitions' `calendar`)."""

    def unknown_calendar_message(self, code: object) -> str | None:
        """None if the code is known, else the one-line error (with close matches)."""

    def first_session(self, code: str) -> date:
        """The earliest session of a known calendar (a partitions `start` may not precede it)."""


class OutsideRules(Protocol):
    @property
    def calendars(self) -> Calendars:
        """The calendars this deployment knows."""

    def gate_floor(self) -> GateFloor | None:
        """The policy's floor; None when the policy is invalid (gate_problems says so)."""

    def gate_problems(self, spec: DagSpec) -> list[Problem]:
        """The `gates` block against the policy and the node it gates."""

    def deploy_problems(self, spec: DagSpec) -> list[Problem]:
        """Pools, kind parameters and sandbox rules: run only on an otherwise valid spec."""
