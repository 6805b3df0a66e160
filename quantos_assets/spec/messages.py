"""Pydantic errors rewritten in the spec's own words.

Pydantic speaks Python ("Input should be a valid integer", "Extra inputs are not
permitted"); a spec author needs "unknown field 'foo'" and "expected one of ...".
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from quantos_assets.spec.models import IDENTIFIER_PATTERN, NAME_PATTERN, TABLE_PATTERN


def kind_of(value: Any) -> str:
    """A value's type in YAML/JSON vocabulary."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, (_dt.date, _dt.datetime)):
        return "date"
    return type(value).__name__


def _shown(value: Any) -> str:
    """A short rendering of a bad value, as the author wrote it."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = f"boolean {str(value).lower()}"
    elif isinstance(value, (int, float, _dt.date)):
        text = f"{kind_of(value)} {value}"
    else:
        text = kind_of(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional so the walk sees the model or container."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _field_of(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _walk(root: type[BaseModel], loc: Sequence[int | str]) -> tuple[Any, FieldInfo | None]:
    """The type at `loc` and the FieldInfo of its last named field."""
    tp: Any = root
    info: FieldInfo | None = None
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            info = _field_of(tp, part)
            if info is None:
                return None, None
            tp = info.annotation
        elif origin is list and isinstance(part, int):
            tp, info = typing.get_args(tp)[0], None
        elif origin is dict:
            tp, info = typing.get_args(tp)[1], None
        else:
            return None, None
    return _unwrap(tp), info


def _allowed_fields(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    tp, _ = _walk(root, loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [info.alias or name for name, info in tp.model_fields.items()]
    return []


def _bounds(info: FieldInfo | None) -> tuple[Any, Any]:
    low = high = None
    for meta in info.metadata if info else ():
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
    return low, high


def _choices(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


def _did_you_mean(word: Any, options: list[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def humanize(root: type[BaseModel], err: ErrorDetails) -> str:
    """One human sentence for one pydantic error; the caller adds file, line and path."""
    kind = err["type"]
    loc = err["loc"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    name = next((p for p in reversed(loc) if isinstance(p, str)), "value")

    if kind == "missing":
        return f"missing required field '{name}'"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(root, loc[:-1])
        hint = _did_you_mean(name, allowed)
        listed = f" (allowed: {', '.join(allowed)})" if allowed and not hint else ""
        return f"unknown field '{name}'{hint}{listed}"
    if kind in ("enum", "literal_error"):
        options = _choices(str(ctx.get("expected", "")))
        return (
            f"unknown {name} {_shown(value)} (expected one of {', '.join(options)})"
            f"{_did_you_mean(value, options)}"
        )
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == NAME_PATTERN:
            if isinstance(value, str) and value.startswith("__"):
                return (
                    f"invalid id {value!r}: names starting with '__' are reserved by Dagster "
                    "(e.g. __ASSET_JOB)"
                )
            return (
                f"invalid id {value!r}: letters, digits and single '_' between them, starting "
                "with a letter "
                "(no '__', no '_' at either end: ids are joined with '__' into Dagster names)"
            )
        if ctx.get("pattern") == IDENTIFIER_PATTERN:
            return (
                f"invalid id {value!r}: use letters, digits and '_', not starting with a digit "
                "(ids become Dagster asset keys)"
            )
        if ctx.get("pattern") == TABLE_PATTERN:
            return (
                f"invalid table {value!r}: a namespace and a table of the lake catalog, two ids "
                "joined by one '.' (e.g. market.bars_1m)"
            )
        return f"invalid {name} {value!r} (must match {ctx.get('pattern')})"
    if kind == "string_too_long":
        return f"{value!r} is too long (at most {ctx.get('max_length')} characters)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        least = ctx.get("min_length")
        return f"must have at least {least} item{'' if least == 1 else 's'}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(_walk(root, loc)[1])
        if low is not None and high is not None:
            return f"{name} must be between {low} and {high}, got {value!r}"
        return f"{name} {err['msg'].removeprefix('Input should be ')}, got {value!r}"
    expected = {
        "string_type": "a string",
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "list_type": "a list",
    }.get(kind)
    if expected:
        quote = (
            " (quote it to make it a string)"
            if kind == "string_type" and isinstance(value, (bool, int, float, _dt.date))
            else ""
        )
        return f"expected {expected}, got {_shown(value)}{quote}"
    return err["msg"]
