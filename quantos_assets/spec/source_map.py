"""Map a field path (pydantic `loc`) to the line where it is written.

Specs are read by people fixing compiler output or hand-written pipelines: an
error must point at a line, not at a Python structure. YAML lines come from the
node tree the YAML composer builds; JSON lines from one token scan of the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# libyaml when available: composing a 10,000-node spec in pure Python is slow.
if TYPE_CHECKING:
    # One class to type against and subclass; CSafeLoader has SafeLoader's interface.
    FAST_LOADER = yaml.SafeLoader
else:
    FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(loc: Sequence[int | str]) -> str:
    """('nodes', 2, 'resources', 'mem') -> 'nodes[2].resources.mem'; () -> '<root>'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "<root>"


def _key_text(key: Node) -> str | None:
    return key.value if isinstance(key.value, str) else None


class SourceMap:
    """Lines of keys and items in one composed YAML/JSON document."""

    def __init__(self, root: Node | None) -> None:
        self._root = root

    def line(self, loc: Sequence[int | str]) -> int:
        """1-based line of the deepest part of `loc` present in the file."""
        node = self._root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, MappingNode):
                found = None
                for key, value in node.value:
                    if _key_text(key) == str(part):
                        found = (key, value)
                if found is None:
                    break
                # The key's line: a nested block mapping starts on the line below.
                line = found[0].start_mark.line + 1
                node = found[1]
            elif isinstance(node, SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def duplicate_keys(self) -> list[tuple[tuple[int | str, ...], int, str]]:
        """(loc, line, message) per repeated key: YAML loaders keep the last one silently."""
        found: list[tuple[tuple[int | str, ...], int, str]] = []
        stack: list[tuple[Node, tuple[int | str, ...]]] = []
        if self._root is not None:
            stack.append((self._root, ()))
        walked: set[int] = set()  # aliases share nodes: walk each once
        while stack:
            node, loc = stack.pop()
            if id(node) in walked:
                continue
            walked.add(id(node))
            if isinstance(node, MappingNode):
                seen: dict[str, int] = {}
                for key, value in node.value:
                    text = _key_text(key)
                    if text is None:
                        continue
                    line = key.start_mark.line + 1
                    if text in seen:
                        found.append(
                            (
                                (*loc, text),
                                line,
                                (
                                    f"duplicate key '{text}' (also at line {seen[text]}; "
                                    "only one would be kept)"
                                ),
                            )
                        )
                    else:
                        seen[text] = line
                    if not isinstance(value, ScalarNode):
                        stack.append((value, (*loc, text)))
            elif isinstance(node, SequenceNode):
                for i, item in enumerate(node.value):
                    if not isinstance(item, ScalarNode):
                        stack.append((item, (*loc, i)))
        return found


class _JsonObject:
    __slots__ = ("line", "loc", "members", "pending")

    def __init__(self, line: int, loc: tuple[int | str, ...]) -> None:
        self.line = line
        self.loc = loc
        self.members: dict[str, tuple[int, _JsonChild]] = {}  # key -> (key line, child)
        self.pending: tuple[str, int] | None = None  # key read, value not yet


class _JsonArray:
    __slots__ = ("items", "line", "loc")

    def __init__(self, line: int, loc: tuple[int | str, ...]) -> None:
        self.line = line
        self.loc = loc
        self.items: list[_JsonChild] = []  # child containers, or the line of a scalar


# A container, or the line of a scalar.
_JsonChild: TypeAlias = "int | _JsonObject | _JsonArray"

# Tokens of an already valid JSON text; whitespace other than newlines is skipped.
_JSON_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{}\[\],:\n]|[^\s{}\[\],:"]+')


class JsonSourceMap:
    """Lines of keys and items in a JSON text that `json.loads` already accepted.

    One regex pass instead of composing the text as YAML: YAML rejects some
    valid JSON (tabs) and is several times slower on 10,000-node specs.
    """

    def __init__(self, text: str) -> None:
        self._root: _JsonChild | None = None
        self._duplicates: list[tuple[tuple[int | str, ...], int, str]] = []
        line = 1
        stack: list[_JsonObject | _JsonArray] = []
        for match in _JSON_TOKEN.finditer(text):
            tok = match.group()
            if tok == "\n":
                line += 1
            elif tok in ",:":
                continue
            elif tok in "}]":
                stack.pop()
            else:
                top = stack[-1] if stack else None
                if isinstance(top, _JsonObject) and top.pending is None:
                    top.pending = (json.loads(tok) if "\\" in tok else tok[1:-1], line)
                    continue
                loc = self._child_loc(top)
                if tok == "{" or tok == "[":
                    container = _JsonObject(line, loc) if tok == "{" else _JsonArray(line, loc)
                    self._attach(top, container)
                    stack.append(container)
                else:
                    self._attach(top, line)

    @staticmethod
    def _child_loc(top: _JsonObject | _JsonArray | None) -> tuple[int | str, ...]:
        if isinstance(top, _JsonObject) and top.pending is not None:
            return (*top.loc, top.pending[0])
        if isinstance(top, _JsonArray):
            return (*top.loc, len(top.items))
        return ()

    def _attach(self, top: _JsonObject | _JsonArray | None, child: _JsonChild) -> None:
        if top is None:
            self._root = child
        elif isinstance(top, _JsonArray):
            top.items.append(child)
        else:
            assert top.pending is not None
            key, key_line = top.pending
            top.pending = None
            if key in top.members:
                self._duplicates.append(
                    (
                        (*top.loc, key),
                        key_line,
                        (
                            f"duplicate key '{key}' (also at line {top.members[key][0]}; "
                            "only one would be kept)"
                        ),
                    )
                )
            top.members[key] = (key_line, child)

    def line(self, loc: Sequence[int | str]) -> int:
        """1-based line of the deepest part of `loc` present in the text."""
        node = self._root
        line = 1 if node is None else node if isinstance(node, int) else node.line
        for part in loc:
            if isinstance(node, _JsonObject) and str(part) in node.members:
                line, node = node.members[str(part)]
            elif (
                isinstance(node, _JsonArray)
                and isinstance(part, int)
                and 0 <= part < len(node.items)
            ):
                node = node.items[part]
                line = node if isinstance(node, int) else node.line
            else:
                break
        return line

    def duplicate_keys(self) -> list[tuple[tuple[int | str, ...], int, str]]:
        """(loc, line, message) per repeated key: `json.loads` keeps the last silently."""
        return list(self._duplicates)


_PATH_PART = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def parse_path(path: str) -> tuple[int | str, ...]:
    """Inverse of `format_path` for plain paths like 'nodes[2].ins[0]'."""
    if path == "<root>":
        return ()
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(path))
