"""How spec YAML is read, so that every way a text can fail ends in a marked YAML error.

PyYAML raises marked errors for syntax, but its constructors let plain exceptions out for
scalars YAML 1.1 types implicitly (`2016-02-30` is a timestamp, a 5,000-digit number an
int) or explicitly (`!!int x`; `!!bool "1"` is a KeyError, `!!timestamp "1"` an
AttributeError; `0xfff...` is an int too long to print in any message), and its reader
raises an unmarked error with a character offset for control characters. Found by
fuzzing the loader (tests/unit/test_spec_loader_fuzz.py).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import Node

from quantos_assets.spec.source_map import FAST_LOADER

# Python turns ints of more than 4,300 decimal digits into text only on request
# (sys.set_int_max_str_digits); decimal YAML and JSON ints stop there already.
_MAX_DIGITS = 4300
_MAX_INT_BITS = int(_MAX_DIGITS * 3.3219)  # log2(10) bits per digit


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


class SpecYamlLoader(FAST_LOADER):
    """libyaml when available; a scalar its constructor rejects becomes a marked error."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            data = super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - any constructor failure is about the file
            raise _unreadable(node, _first_clause(exc)) from None
        if isinstance(data, int) and data.bit_length() > _MAX_INT_BITS:
            # 0x/0b ints have no digit limit, but every message quoting one would fail.
            raise _unreadable(node, f"more than {_MAX_DIGITS} digits")
        return data


def _unreadable(node: Node, why: str) -> ConstructorError:
    value = node.value if isinstance(node.value, str) else ""
    shown = repr(value) if len(value) <= 40 else repr(value[:37]) + "..."
    hint = " (quote it to make it a string)" if not node.tag.startswith("!") else ""
    return ConstructorError(
        None, None, f"cannot read {shown} as {_short_tag(node.tag)}: {why}{hint}", node.start_mark
    )


def _first_clause(exc: Exception) -> str:
    """`int()`'s digit-limit message goes on about sys.set_int_max_str_digits()."""
    return str(exc).split(";")[0].split("\n")[0]


def reader_error_line(text: str, exc: yaml.reader.ReaderError) -> int:
    """Line of the offending character (the reader counts characters, not lines)."""
    return text.count("\n", 0, max(exc.position, 0)) + 1
