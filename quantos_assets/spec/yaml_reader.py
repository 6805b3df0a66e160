"""How spec YAML is read, so that every way a text can fail ends in a marked YAML error.

PyYAML raises marked errors for syntax, but its constructors let plain exceptions out for
scalars YAML 1.1 types implicitly (`2016-02-30` is a timestamp, a 5,000-digit number an
int) or explicitly (`!!int x`; `!!bool "1"` is a KeyError, `!!timestamp "1"` an
AttributeError; `0xfff...` is an int too long to print in any message), and its reader
raises an unmarked error with a character offset for control characters. Found by
fuzzing the loader (tests/unit/test_spec_loader_fuzz.py).

Aliases are bounded too. The composer makes an alias the very node its anchor names, so a
"billion laughs" (nine lists of nine aliases of the list before) composes and constructs
in milliseconds into shared Python objects; whatever walks the values later (a digest,
`model_dump`, JSON) expands them: 13 GB and minutes for one spec. So the composed graph is
measured before anything is built (its expanded size, counted once per distinct node) and
refused with go-yaml's rule (yaml.v3 decode.go `allowedAliasRatio`, what Kubernetes runs):
past 1,000 expanded nodes, aliases may make up 99% of a document up to 400,000 nodes,
falling to 10% at 4,000,000. Anchors stay allowed: a compiler may share a block. A
recursive alias (`&a [*a]`) can be no spec value and is refused outright.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from quantos_assets.spec.source_map import FAST_LOADER

# Python turns ints of more than 4,300 decimal digits into text only on request
# (sys.set_int_max_str_digits); decimal YAML and JSON ints stop there already.
_MAX_DIGITS = 4300
_MAX_INT_BITS = int(_MAX_DIGITS * 3.3219)  # log2(10) bits per digit


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


# go-yaml's bounds (gopkg.in/yaml.v3 decode.go): below LOW expanded nodes almost any
# aliasing is fine, above HIGH at most 10% of the nodes may come from aliases.
_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000
_MIN_EXPANDED = 1_000
_MIN_ALIASED = 100


class SpecYamlLoader(FAST_LOADER):
    """libyaml when available; a scalar its constructor rejects becomes a marked error, and
    a document whose aliases expand too far is refused before it is constructed."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        # No '*' in the text, no alias: the common case skips the measurement.
        self._may_alias = not isinstance(stream, str) or "*" in stream

    def get_single_node(self) -> Node | None:
        node: Node | None = super().get_single_node()
        if node is not None and self._may_alias:
            check_alias_expansion(node)
        return node

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


def allowed_alias_ratio(expanded: int) -> float:
    """The share of a document's expanded nodes that may come from aliases (go-yaml's)."""
    if expanded <= _ALIAS_RATIO_LOW:
        return 0.99
    if expanded >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (expanded - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_alias_expansion(root: Node) -> None:
    """ComposerError (marked) if aliases expand the document too far, or make it recursive.

    Linear in distinct nodes: each node's expanded size is computed once, from its
    children's (a post-order walk with an explicit stack: nesting may be deep here)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    order: list[Node] = []  # distinct nodes, children before parents
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            order.append(node)
            continue
        if key in sizes:
            continue
        if key in open_:
            raise ComposerError(
                None,
                None,
                "an alias refers to the collection it is in (a recursive value cannot be a spec "
                "field)",
                node.start_mark,
            )
        open_.add(key)
        stack.append((node, True))
        for child in reversed(_children(node)):
            if id(child) in open_:
                raise ComposerError(
                    None,
                    None,
                    "an alias refers to the collection it is in (a recursive value cannot be a "
                    "spec field)",
                    child.start_mark,
                )
            if id(child) not in sizes:
                stack.append((child, False))
    expanded, distinct = sizes[id(root)], len(sizes)
    aliased = expanded - distinct
    if (
        aliased <= _MIN_ALIASED
        or expanded <= _MIN_EXPANDED
        or aliased / expanded <= allowed_alias_ratio(expanded)
    ):
        return
    # Point at the innermost collection that already expands past the whole document's
    # own size: where the aliases start multiplying.
    bound = max(_MIN_EXPANDED, distinct)
    here = next(n for n in order if sizes[id(n)] > bound)
    raise ComposerError(
        None,
        None,
        f"aliases expand the document to {expanded:,} nodes ({aliased:,} of them copies; this "
        f"collection alone to {sizes[id(here)]:,}): too many for a spec (a YAML alias bomb?)",
        here.start_mark,
    )


class YamlFileError(ValueError):
    """A platform YAML file that cannot be read: one line naming it (and the line at fault)."""


def read_yaml_file(path: Path, shown: str) -> Any:
    """A platform policy file (teams, local images) read the way specs are: a scalar its tag
    cannot build is a marked error like any syntax error, and aliases are bounded. `shown`
    is how messages name the file."""
    try:
        return yaml.load(path.read_text(), Loader=SpecYamlLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise YamlFileError(f"{shown}{line}: not YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise YamlFileError(f"{shown}: not YAML ({str(err).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise YamlFileError(f"{shown}: cannot be read ({str(err).splitlines()[0]})") from None
