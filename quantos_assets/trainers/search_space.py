"""`params.search`: a hyperparameter search declared in a small closed grammar.

    search:
      lr: loguniform(1e-4, 1e-2)    # also uniform(a, b), randint(a, b) (b excluded)
      hidden: choice(32, 64)        # or a YAML list: [32, 64]
      trials: 4                     # configurations tried (default 4, at most 64)
      metric: best_val_loss         # picks the best trial (default); val_loss, train_loss
      mode: min                     # or max

A grammar of our own, not Python and not Ray Tune's objects: a spec from the compiler can
neither run code nor ask for an unbounded search, and `quantos validate` points at the line
of a malformed entry. Trials are chosen on the validation split only: the test windows the
reported metrics come from are never seen by the search.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Bounds on what one node may ask of the shared cluster (as params.workers is bounded).
MAX_TRIALS = 64
MAX_CHOICES = 32
DEFAULT_TRIALS = 4
SETTINGS = ("trials", "metric", "mode")
# What each epoch of a torch trainer reports (trainers/torch_loop.py).
METRICS = ("best_val_loss", "val_loss", "train_loss")
# Fixed for the whole search: the windows are cut once, before any trial.
NOT_SEARCHABLE = {"lookback": "the lookback windows are cut once for every trial"}
_CALL = re.compile(r"^\s*(loguniform|uniform|randint|choice)\s*\((.*)\)\s*$", re.DOTALL)
_ARITY = {"loguniform": 2, "uniform": 2, "randint": 2}


class SearchSpaceError(ValueError):
    """A malformed `params.search`; `field` is the key under it (e.g. `lr`, `trials`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Distribution:
    kind: str  # loguniform | uniform | randint | choice
    args: tuple[Any, ...]

    def to_tune(self) -> Any:
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def describe(self) -> str:
        return f"{self.kind}({', '.join(repr(a) for a in self.args)})"


@dataclass(frozen=True)
class Search:
    space: Mapping[str, Distribution]
    trials: int = DEFAULT_TRIALS
    metric: str = "best_val_loss"
    mode: str = "min"

    def describe(self) -> dict[str, Any]:
        return {
            "space": {name: d.describe() for name, d in self.space.items()},
            "trials": self.trials,
            "metric": self.metric,
            "mode": self.mode,
        }


def parse_search(value: Any, defaults: Mapping[str, Any], fixed: Mapping[str, Any]) -> Search:
    """The search `value` declares over a trainer whose hyperparameters default to `defaults`
    (their types decide what may be searched); `fixed` are the node's other params: a name set
    both ways is ambiguous."""
    if not isinstance(value, Mapping) or not value:
        raise SearchSpaceError(
            "",
            "params.search is a mapping of hyperparameter: distribution, with trials, metric, mode",
        )
    space: dict[str, Distribution] = {}
    for name, raw in value.items():
        name = str(name)
        if name in SETTINGS:
            continue
        if name not in defaults:
            raise SearchSpaceError(
                name,
                f"'{name}' is not a hyperparameter of this trainer (it takes "
                f"{', '.join(sorted(defaults))})",
            )
        if name in NOT_SEARCHABLE:
            raise SearchSpaceError(
                name, f"'{name}' cannot be searched: {NOT_SEARCHABLE[name]}; set it in params"
            )
        if name in fixed:
            raise SearchSpaceError(name, f"'{name}' is both set in params and searched; keep one")
        space[name] = _distribution(name, raw, defaults[name])
    if not space:
        raise SearchSpaceError("", "params.search names no hyperparameter to search")
    return Search(
        space=space,
        trials=_trials(value.get("trials", DEFAULT_TRIALS)),
        metric=_one_of("metric", value.get("metric", "best_val_loss"), METRICS),
        mode=_one_of("mode", value.get("mode", "min"), ("min", "max")),
    )


def _distribution(name: str, raw: Any, default: Any) -> Distribution:
    if isinstance(raw, list):
        kind, args = "choice", tuple(raw)
    elif isinstance(raw, str) and (match := _CALL.match(raw)):
        kind, args = match.group(1), _arguments(name, match.group(2))
    else:
        raise SearchSpaceError(
            name,
            f"'{name}: {raw!r}' is not a distribution: loguniform(a, b), uniform(a, b), "
            "randint(a, b) or choice(x, y, ...)",
        )
    whole = isinstance(default, int) and not isinstance(default, bool)
    if kind in _ARITY:
        if len(args) != _ARITY[kind] or not all(_number(a) for a in args):
            raise SearchSpaceError(
                name,
                f"'{name}': {kind} takes two numbers, not {len(args)} argument(s) {list(args)}",
            )
        low, high = args
        if not low < high:
            raise SearchSpaceError(
                name, f"'{name}': {kind}({low}, {high}) needs the first bound below the second"
            )
        if kind == "loguniform" and low <= 0:
            raise SearchSpaceError(name, f"'{name}': loguniform needs bounds above 0, not {low}")
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            raise SearchSpaceError(name, f"'{name}': randint takes whole numbers, not {list(args)}")
        if whole and kind != "randint":
            raise SearchSpaceError(
                name, f"'{name}' takes whole numbers: use choice(...) or randint(a, b), not {kind}"
            )
        return Distribution(kind, (low, high))
    if not 1 <= len(args) <= MAX_CHOICES:
        raise SearchSpaceError(
            name, f"'{name}': choice takes 1 to {MAX_CHOICES} values, not {len(args)}"
        )
    for arg in args:
        if not _fits(arg, default):
            wanted = "whole numbers" if whole else ("numbers" if _number(default) else "strings")
            raise SearchSpaceError(
                name,
                f"'{name}': choice values must be {wanted} like its default {default!r}, not "
                f"{arg!r}",
            )
    return Distribution("choice", args)


def _arguments(name: str, text: str) -> tuple[Any, ...]:
    """The literal arguments of `kind(...)`: numbers and strings only, never evaluated code."""
    try:
        value = ast.literal_eval(f"({text},)") if text.strip() else ()
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise SearchSpaceError(
            name, f"'{name}': arguments must be numbers or quoted strings, not '{text.strip()}'"
        ) from None
    if not all(_number(v) or isinstance(v, str) for v in value):
        raise SearchSpaceError(
            name, f"'{name}': arguments must be numbers or quoted strings, not '{text.strip()}'"
        )
    return tuple(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if _number(default):
        return _number(value)
    return isinstance(value, str)


def _trials(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TRIALS:
        raise SearchSpaceError(
            "trials", f"search.trials is a whole number from 1 to {MAX_TRIALS}, not {value!r}"
        )
    return value


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SearchSpaceError(
            field, f"search.{field} is one of {', '.join(allowed)}, not {value!r}"
        )
    return str(value)
