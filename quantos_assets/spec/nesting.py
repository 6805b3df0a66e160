"""How deep a spec may nest, checked before it is composed.

libyaml's scanner is quadratic in nesting depth (a 40 KB file of `[[[[...` takes seconds
to compose, a 400 KB one minutes) and `json.loads` raises RecursionError near Python's
recursion limit. Specs nest a handful of levels (params included), so one bound, the same
for YAML and JSON, turns both into a one-line error at the line where it is crossed.
Found by fuzzing the loader (tests/unit/test_spec_loader_fuzz.py).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from quantos_assets.spec.source_map import FAST_LOADER

MAX_NESTING = 200
TOO_DEEP = f"nested more than {MAX_NESTING} levels deep (a spec needs a handful)"

_JSON_BRACKETS = re.compile(r'"(?:[^"\\\n]|\\.)*"|[\[\]{}\n]')


def _may_nest_too_deep(text: str) -> bool:
    """A cheap upper bound on a YAML text's nesting, so most specs skip the exact walk.

    Flow nesting needs a `[` or `{` per level. A block collection starts at the column of
    its first key or `-` (after the line's indentation and any `- `, `? `, `: ` prefixes),
    and along a chain of nested block collections the column grows, except that a mapping
    and its sequence value may share one: at most two levels per column.
    """
    flow = text.count("[") + text.count("{")
    if flow > MAX_NESTING:
        return True
    widest = max((len(line) - len(line.lstrip(" -?:")) for line in text.splitlines()), default=0)
    return flow + 2 * (widest + 1) > MAX_NESTING


def yaml_too_deep_line(text: str) -> int | None:
    """1-based line where nesting first exceeds MAX_NESTING, or None.

    Walks libyaml's events (one C pass, about a tenth of composing) and stops at the
    bound, so the scanner never gets deep enough to be slow. A text that does not
    parse gives None: composing it reports the syntax error with its mark.
    """
    if not _may_nest_too_deep(text):
        return None
    parser = FAST_LOADER(text)
    depth = 0
    try:
        while (event := parser.get_event()) is not None:
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    return event.start_mark.line + 1 if event.start_mark else 1
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return None
    except yaml.YAMLError:
        return None
    finally:
        parser.dispose()


def json_too_deep(data: Any, text: str) -> bool:
    """Whether parsed JSON nests node params more than MAX_NESTING levels deep.

    json.loads itself stops near Python's recursion limit (RecursionError, reported by
    the loader); below it only `params`, the one free-form field, can hold a deep value
    that the models accept, so only params are walked (the whole document costs ~10%
    of loading a 10,000-node spec).
    """
    if text.count("[") + text.count("{") <= MAX_NESTING or not isinstance(data, dict):
        return False
    nodes = data.get("nodes")
    # root mapping -> nodes list -> node mapping -> params: params sit at level 4
    stack: list[tuple[Any, int]] = [
        (node.get("params"), 4)
        for node in (nodes if isinstance(nodes, list) else [])
        if isinstance(node, dict)
    ]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_NESTING:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items if isinstance(item, (dict, list)))
    return False


def json_too_deep_line(text: str) -> int:
    """Line where a JSON text's brackets first nest past MAX_NESTING (strings skipped)."""
    line, depth = 1, 0
    for match in _JSON_BRACKETS.finditer(text):
        token = match.group()
        if token == "\n":
            line += 1
        elif token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line
        elif token in "]}":
            depth -= 1
        else:
            line += token.count("\n")
    return line
