"""Kubernetes-style resource quantities and human durations.

They are parsed once, at the edge, so that translation and placement work on
numbers (cores, bytes, seconds) and never re-parse strings.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
# ASCII digits only and no inner spaces: the same patterns go into the JSON
# Schema, and ECMA-262 and Python must accept exactly the same strings.
_NUM = r"[0-9]+(?:\.[0-9]+)?"
_QTY = re.compile(rf"^({_NUM})(m|Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$")
_CPU_PATTERN = rf"^{_NUM}m?$"
_MEM_PATTERN = rf"^{_NUM}(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$"
_DUR = re.compile(rf"({_NUM})(ms|s|m|h|d)")
_DUR_PATTERN = rf"^(?:{_NUM}(?:ms|s|m|h|d))+$"
_DUR_FULL = re.compile(_DUR_PATTERN)
_DUR_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# Parsers raise ValueError even for wrong types: pydantic turns only ValueError
# (not TypeError) into a field error with a path and a line.


def _float(value: float, what: str) -> float:
    """float() of a YAML/JSON number; an int past 1e308 overflows (found by fuzzing)."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{what} is out of range: a {len(str(value))}-digit number") from None


def parse_cpu(value: object) -> float:
    """CPU cores from "4", "500m", 2 or 0.5."""
    if isinstance(value, bool):
        raise ValueError(f'cpu must look like "4" or "500m", not {value!r}')  # noqa: TRY004
    if isinstance(value, (int, float)):
        number, unit = _float(value, "cpu"), None
    else:
        m = _QTY.fullmatch(str(value))
        if not m or m.group(2) not in (None, "m"):
            raise ValueError(f'cpu must be a quantity like "4" or "500m", not {value!r}')
        number, unit = float(m.group(1)), m.group(2)
    cores = number / 1000 if unit == "m" else number
    if not math.isfinite(cores) or cores <= 0:
        raise ValueError(f"cpu must be positive, not {value!r}")
    return cores


def parse_bytes(value: object) -> int:
    """Memory in bytes from "16Gi", "512Mi", "1G" or a plain integer."""
    if isinstance(value, bool):
        raise ValueError(f'mem must be a quantity like "16Gi", not {value!r}')  # noqa: TRY004
    if isinstance(value, int):
        number, unit = _float(value, "mem"), None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f'mem must be a finite quantity like "16Gi", not {value!r}')
    else:
        m = _QTY.fullmatch(str(value))
        if not m or m.group(2) == "m":
            raise ValueError(f'mem must be a quantity like "16Gi" or "512Mi", not {value!r}')
        number, unit = float(m.group(1)), m.group(2)
    factor = _BINARY.get(unit or "", _DECIMAL.get(unit or "", 1))
    if not math.isfinite(number * factor):
        raise ValueError(f'mem must be a finite quantity like "16Gi", not {value!r}')
    size = int(number * factor)
    if size <= 0:
        raise ValueError(f"mem must be positive, not {value!r}")
    return size


def parse_duration(value: object) -> float:
    """Seconds from "2h", "90s", "1h30m" or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f'duration must look like "2h" or "90s", not {value!r}')  # noqa: TRY004
    if isinstance(value, (int, float)):
        seconds = _float(value, "duration")
    else:
        text = str(value)
        if not _DUR_FULL.fullmatch(text):
            raise ValueError(f'duration must look like "2h", "90s" or "1h30m", not {value!r}')
        seconds = sum(float(n) * _DUR_UNIT[u] for n, u in _DUR.findall(text))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be positive, not {value!r}")
    return seconds


def format_cpu(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{round(cores * 1000)}m"


def format_bytes(size: int) -> str:
    for unit in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        if size % _BINARY[unit] == 0:
            return f"{size // _BINARY[unit]}{unit}"
    return str(size)


Cpu = Annotated[
    float,
    BeforeValidator(parse_cpu),
    PlainSerializer(format_cpu, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _CPU_PATTERN},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": 'CPU cores: "4", "500m", 0.5',
        }
    ),
]
Memory = Annotated[
    int,
    BeforeValidator(parse_bytes),
    PlainSerializer(format_bytes, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _MEM_PATTERN},
                {"type": "integer", "exclusiveMinimum": 0},
            ],
            "description": 'bytes: "16Gi", "512Mi", "1G"',
        }
    ),
]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _DUR_PATTERN},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": 'seconds, or "2h", "90s", "1h30m"',
        }
    ),
]
