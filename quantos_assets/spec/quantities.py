"""Kubernetes-style resource quantities and human durations.

They are parsed once, at the edge, so that translation and placement work on
numbers (cores, bytes, seconds) and never re-parse strings.
"""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QTY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?\s*$")
_DUR = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DUR_FULL = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+$")
_DUR_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_cpu(value: object) -> float:
    """CPU cores from "4", "500m", 2 or 0.5."""
    if isinstance(value, bool):
        raise ValueError(f"cpu must be a quantity like \"4\" or \"500m\", not {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), None
    else:
        m = _QTY.match(str(value))
        if not m or m.group(2) not in (None, "m"):
            raise ValueError(f"cpu must be a quantity like \"4\" or \"500m\", not {value!r}")
        number, unit = float(m.group(1)), m.group(2)
    cores = number / 1000 if unit == "m" else number
    if cores <= 0:
        raise ValueError(f"cpu must be positive, not {value!r}")
    return cores


def parse_bytes(value: object) -> int:
    """Memory in bytes from "16Gi", "512Mi", "1G" or a plain integer."""
    if isinstance(value, bool):
        raise ValueError(f"mem must be a quantity like \"16Gi\", not {value!r}")
    if isinstance(value, int):
        number, unit = float(value), None
    else:
        m = _QTY.match(str(value))
        if not m or m.group(2) == "m":
            raise ValueError(f"mem must be a quantity like \"16Gi\" or \"512Mi\", not {value!r}")
        number, unit = float(m.group(1)), m.group(2)
    factor = _BINARY.get(unit or "", _DECIMAL.get(unit or "", 1))
    size = int(number * factor)
    if size <= 0:
        raise ValueError(f"mem must be positive, not {value!r}")
    return size


def parse_duration(value: object) -> float:
    """Seconds from "2h", "90s", "1h30m" or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"duration must look like \"2h\" or \"90s\", not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value)
        if not _DUR_FULL.match(text):
            raise ValueError(f"duration must look like \"2h\", \"90s\" or \"1h30m\", not {value!r}")
        seconds = sum(float(n) * _DUR_UNIT[u] for n, u in _DUR.findall(text))
    if seconds <= 0:
        raise ValueError(f"duration must be positive, not {value!r}")
    return seconds


def format_cpu(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{int(round(cores * 1000))}m"


def format_bytes(size: int) -> str:
    for unit in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        if size % _BINARY[unit] == 0:
            return f"{size // _BINARY[unit]}{unit}"
    return str(size)


_QTY_SCHEMA = {"anyOf": [{"type": "string", "pattern": _QTY.pattern}, {"type": "number"}]}

Cpu = Annotated[
    float,
    BeforeValidator(parse_cpu),
    PlainSerializer(format_cpu, return_type=str),
    WithJsonSchema({**_QTY_SCHEMA, "description": "CPU cores: \"4\", \"500m\""}),
]
Memory = Annotated[
    int,
    BeforeValidator(parse_bytes),
    PlainSerializer(format_bytes, return_type=str),
    WithJsonSchema({**_QTY_SCHEMA, "description": "bytes: \"16Gi\", \"512Mi\""}),
]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": _DUR_FULL.pattern}, {"type": "number"}],
         "description": "seconds, or \"2h\", \"90s\", \"1h30m\""}
    ),
]
