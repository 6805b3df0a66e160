"""Metric bounds as written in a gate (`sharpe: ">= 1.0"`) and how one is judged.

One comparison per metric: `>=`, `>`, `<=` or `<` and a finite number. Which of two
bounds on the same metric is stricter is what lets a spec tighten the firm's policy but
never loosen it, so that rule lives here with the parsing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Op = Literal[">=", ">", "<=", "<"]
_BOUND = re.compile(r"^\s*(>=|<=|>|<)\s*([^\s].*?)\s*$")
_OPS: dict[str, Op] = {">=": ">=", ">": ">", "<=": "<=", "<": "<"}  # what _BOUND matched
_NEGATED: dict[str, str] = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


class BoundSyntaxError(ValueError):
    """Not `OP NUMBER`; the message says what is expected."""


@dataclass(frozen=True)
class Bound:
    metric: str
    op: Op
    value: float
    text: str  # the number as written ("1.0"), so messages quote the author

    @property
    def lower(self) -> bool:
        """A floor (>=, >) rather than a ceiling (<=, <)."""
        return self.op in (">=", ">")

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.text}"

    def holds(self, measured: float) -> bool:
        return {
            ">=": measured >= self.value,
            ">": measured > self.value,
            "<=": measured <= self.value,
            "<": measured < self.value,
        }[self.op]

    def at_least_as_strict_as(self, other: Bound) -> bool:
        """Every value this bound admits, `other` admits too (same metric and direction)."""
        if self.lower != other.lower:
            return False
        if self.value != other.value:
            return self.value > other.value if self.lower else self.value < other.value
        # Same number: strict (>, <) is tighter than inclusive (>=, <=).
        return len(self.op) == 1 or len(other.op) == 2


def parse_bound(metric: str, text: object) -> Bound:
    if isinstance(text, bool) or not isinstance(text, str):
        raise BoundSyntaxError(f'a bound is a string like ">= 1.0" or "<= 0.2", got {text!r}')
    match = _BOUND.match(text)
    if match is None:
        raise BoundSyntaxError(
            f'bound {text!r} is not OP NUMBER (OP is >=, >, <= or <), e.g. ">= 1.0"'
        )
    op, number = _OPS[match.group(1)], match.group(2)
    try:
        value = float(number)
    except ValueError:
        raise BoundSyntaxError(f"bound {text!r}: {number!r} is not a number") from None
    if not math.isfinite(value):
        raise BoundSyntaxError(f"bound {text!r}: the number must be finite")
    return Bound(metric=metric, op=op, value=value, text=number)


@dataclass(frozen=True)
class BoundVerdict:
    bound: Bound
    passed: bool
    measured: float | None
    reason: str  # one line: "sharpe 0.71 < 1.0 (>= 1.0 required)"


def judge(bound: Bound, metrics: dict[str, object]) -> BoundVerdict:
    """The bound against a metrics document; a missing or non-numeric metric fails."""
    name = bound.metric
    if name not in metrics:
        known = ", ".join(sorted(metrics)) or "nothing"
        return BoundVerdict(bound, False, None, f"{name} is not in the metrics (they have {known})")
    raw = metrics[name]
    if raw is None:
        return BoundVerdict(
            bound, False, None, f"{name} is null in the metrics ({bound.op} {bound.text} required)"
        )
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return BoundVerdict(
            bound,
            False,
            None,
            f"{name} is {raw!r}, not a number ({bound.op} {bound.text} required)",
        )
    measured = float(raw)
    if not math.isfinite(measured):
        return BoundVerdict(
            bound, False, measured, f"{name} is {measured} ({bound.op} {bound.text} required)"
        )
    shown = _shown(measured, bound)
    if bound.holds(measured):
        return BoundVerdict(bound, True, measured, f"{name} {shown} {bound.op} {bound.text}")
    return BoundVerdict(
        bound,
        False,
        measured,
        f"{name} {shown} {_NEGATED[bound.op]} {bound.text} ({bound.op} {bound.text} required)",
    )


def _shown(measured: float, bound: Bound) -> str:
    """Four significant digits, unless rounding would put the value on the other side."""
    short = f"{measured:.4g}"
    return (
        short
        if bound.holds(float(short)) == bound.holds(measured) and float(short) != bound.value
        else repr(measured)
    )
