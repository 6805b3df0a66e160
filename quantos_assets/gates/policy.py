"""The firm-wide promotion policy (deploy/policies/promotion.yaml) and a spec's gate over it.

The policy is the floor every gated model must clear: its bounds, its stages in order and
the model-card fields it requires. A spec's `gates` block may tighten a bound or add one,
and may stop before the last stage; anything looser is a validation error citing both
files (spec_rules/gates.py). `effective_gate` is what the checks then enforce.

Like deploy/pools.yaml (QUANTOS_POOLS_FILE), the file is an input of spec validation, so
its location is read here: QUANTOS_PROMOTION_POLICY, else the repository's copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from quantos_assets.spec.bounds import Bound, parse_bound
from quantos_assets.spec.loader import Positions, load_document
from quantos_assets.spec.models import BoundText, Gates, Identifier, Strict
from resources.profile import promotion_policy_file

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "deploy" / "policies" / "promotion.yaml"


class ModelCardPolicy(Strict):
    required: list[str] = Field(default_factory=list)


class PromotionPolicy(Strict):
    version: Literal[1]
    stages: list[Identifier] = Field(min_length=1)
    require: dict[Identifier, BoundText] = Field(default_factory=dict)
    model_card: ModelCardPolicy = Field(default_factory=ModelCardPolicy)

    @field_validator("stages")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("every stage once: " + ", ".join(value))
        return value


@dataclass(frozen=True)
class LoadedPolicy:
    policy: PromotionPolicy
    source: str  # the path as given, for messages
    positions: Positions

    def where(self, *loc: str) -> str:
        """`deploy/policies/promotion.yaml:6`: the line a policy field is written on."""
        return f"{self.source}:{self.positions.line(loc)}"

    def bounds(self) -> dict[str, Bound]:
        return {m: parse_bound(m, t) for m, t in self.policy.require.items()}


def policy_path() -> Path:
    return promotion_policy_file()


def load_policy(path: Path | None = None) -> LoadedPolicy:
    """The policy (SpecError with file:line problems if it is invalid); re-read when it changes."""
    file = path or policy_path()
    try:
        stamp = file.stat().st_mtime_ns
    except OSError:
        stamp = -1  # let the loader report the unreadable file
    return _load(str(file), stamp)


@lru_cache(maxsize=4)
def _load(file: str, _stamp: int) -> LoadedPolicy:
    shown = _relative(Path(file))
    policy, positions = load_document(file, PromotionPolicy)
    return LoadedPolicy(policy=policy, source=shown, positions=positions)


def _relative(path: Path) -> str:
    """Repository files by their repository path (messages and snapshots do not depend on
    the working directory); others as given."""
    try:
        return str(path.resolve().relative_to(DEFAULT_POLICY_FILE.parents[2]))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class GateBound:
    bound: Bound
    origin: Literal["spec", "policy"]


@dataclass(frozen=True)
class EffectiveGate:
    """What the checks of one gated model enforce: policy and spec merged."""

    model: str
    metrics: str
    bounds: tuple[GateBound, ...]
    stages: tuple[str, ...]
    card_fields: tuple[str, ...]
    policy_source: str


def effective_gate(gates: Gates, loaded: LoadedPolicy) -> EffectiveGate:
    """The spec's bounds where it sets one (already known to be no looser), the policy's
    elsewhere; the spec's stages, or all of the policy's."""
    own = {m: parse_bound(m, t) for m, t in gates.require.items()}
    merged = {m: GateBound(b, "policy") for m, b in loaded.bounds().items()}
    merged.update({m: GateBound(b, "spec") for m, b in own.items()})
    return EffectiveGate(
        model=gates.model,
        metrics=gates.metrics,
        bounds=tuple(merged[m] for m in sorted(merged)),
        stages=tuple(gates.stages or loaded.policy.stages),
        card_fields=tuple(loaded.policy.model_card.required),
        policy_source=loaded.source,
    )


def loosening_problems(gates: Gates, loaded: LoadedPolicy) -> list[tuple[str, str]]:
    """(spec field path, message) for every way the spec is looser than the policy."""
    problems: list[tuple[str, str]] = []
    floor = loaded.bounds()
    for metric, text in gates.require.items():
        mine, theirs = parse_bound(metric, text), floor.get(metric)
        if theirs is None or mine.at_least_as_strict_as(theirs):
            continue
        where = loaded.where("require", metric)
        if mine.lower != theirs.lower:
            message = (
                f"'{text}' bounds the other side of the firm-wide '{theirs}' ({where}); "
                f"one bound per metric: tighten the firm's instead"
            )
        else:
            message = (
                f"'{text}' loosens the firm-wide '{theirs}' ({where}); a spec may only tighten it"
            )
        problems.append((f"gates.require.{metric}", message))
    if gates.stages is not None:
        problems.extend(_stage_problems(gates.stages, loaded))
    return problems


def _stage_problems(stages: list[str], loaded: LoadedPolicy) -> list[tuple[str, str]]:
    firm = loaded.policy.stages
    where = loaded.where("stages")
    for i, stage in enumerate(stages):
        if stage not in firm:
            return [
                (
                    f"gates.stages[{i}]",
                    f"unknown stage '{stage}' (the firm's stages, {where}: {', '.join(firm)})",
                )
            ]
    if stages != firm[: len(stages)]:
        skipped = [s for s in firm[: firm.index(stages[-1]) + 1] if s not in stages]
        what = f"skips {', '.join(skipped)}" if skipped else "reorders them"
        return [
            (
                "gates.stages",
                (
                    f"[{', '.join(stages)}] {what}: the firm promotes through {', '.join(firm)} "
                    f"in order ({where}); a spec may stop early, never skip or reorder"
                ),
            )
        ]
    return []
