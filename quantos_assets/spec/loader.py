"""Read DAG specs and runtime params from YAML/JSON, reporting every problem at once.

Each problem becomes one `FILE:LINE: field.path: message` line of a `SpecError`
(field errors from the models and graph-rule errors together, in file order),
never a traceback: specs are written by a compiler and fixed by people.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from quantos_assets.spec.calendar_rules import check_calendar_blocks
from quantos_assets.spec.errors import SpecError, SpecProblem
from quantos_assets.spec.external_inputs import external_input_problems
from quantos_assets.spec.graph_rules import check_graph
from quantos_assets.spec.messages import humanize, kind_of
from quantos_assets.spec.models import (
    CALENDARS,
    SKIP_GRAPH_RULES,
    DagSpec,
    Edge,
    Node,
    RuntimeParams,
)
from quantos_assets.spec.name_rules import colliding_names, reserved_names
from quantos_assets.spec.nesting import (
    TOO_DEEP,
    json_too_deep,
    json_too_deep_line,
    yaml_too_deep_line,
)
from quantos_assets.spec.outside_rules import OutsideRules
from quantos_assets.spec.source_map import (
    JsonSourceMap,
    SourceMap,
    format_path,
    parse_path,
)
from quantos_assets.spec.yaml_reader import SpecYamlLoader, reader_error_line

Format = Literal["yaml", "json"]
M = TypeVar("M", bound=BaseModel)

_SUFFIXES: dict[str, Format] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec and where it came from; sha256 of the raw bytes names the exact version run."""

    spec: DagSpec
    path: Path | None
    sha256: str


def load_spec_under(path: str | Path, rules: OutsideRules) -> LoadedSpec:
    """Load a spec file (.yaml, .yml or .json) and check it with its own rules and `rules`
    (the firm's: quantos_assets/spec_rules/firm.py `load_spec`)."""
    source = str(path)
    fmt = _format_of(Path(path), source)
    raw = _read(Path(path), source)
    spec = _load_model(_decode(raw, source), source, fmt, DagSpec, rules)
    return LoadedSpec(spec=spec, path=Path(path), sha256=hashlib.sha256(raw).hexdigest())


def load_spec_text_under(text: str, source: str, fmt: Format, rules: OutsideRules) -> LoadedSpec:
    """Load a spec held in memory (`source` names it in error lines), checked as above."""
    spec = _load_model(text, source, _check_format(fmt, source), DagSpec, rules)
    return LoadedSpec(spec=spec, path=None, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


def load_runtime_params(
    source: str | Path | Mapping[str, Any], *, name: str = "<runtime params>"
) -> RuntimeParams:
    """Runtime params from a .yaml/.yml/.json file or an already parsed mapping.

    A mapping has no lines: its problems are reported as `name:1`.
    """
    if isinstance(source, Mapping):
        result, problems = _validate(dict(source), name, SourceMap(None), RuntimeParams, None)
        if result is None:
            raise SpecError(problems)
        return result
    path = Path(source)
    label = str(source)
    fmt = _format_of(path, label)
    return _load_model(_decode(_read(path, label), label), label, fmt, RuntimeParams)


def load_runtime_params_text(text: str, source: str, fmt: Format) -> RuntimeParams:
    """Runtime params held in memory (e.g. from a submission request body)."""
    return _load_model(text, source, _check_format(fmt, source), RuntimeParams)


def _problem(source: str, line: int, path: str, message: str) -> SpecError:
    return SpecError([SpecProblem(source, line, path, message)])


def _read(path: Path, source: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _problem(source, 1, "<root>", f"cannot read file: {exc.strerror or exc}") from None


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _problem(source, line, "<root>", "file is not UTF-8 text") from None


def _format_of(path: Path, source: str) -> Format:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise _problem(
            source,
            1,
            "<root>",
            f"unsupported file type '{path.suffix}' (use .yaml, .yml or .json)",
        )
    return fmt


def _check_format(fmt: str, source: str) -> Format:
    if fmt == "yaml":
        return "yaml"
    if fmt == "json":
        return "json"
    raise _problem(source, 1, "<root>", f"unsupported format {fmt!r} (use 'yaml' or 'json')")


class Positions(Protocol):
    """Where fields are written: YAML node marks or a JSON token scan."""

    def line(self, loc: Sequence[int | str]) -> int: ...

    def duplicate_keys(self) -> list[tuple[tuple[int | str, ...], int, str]]: ...


def _parse(
    text: str, source: str, fmt: Format, reader: type[SpecYamlLoader] = SpecYamlLoader
) -> tuple[Any, Positions, list[SpecProblem]]:
    """Data, a map of its lines, and duplicate-key problems; SpecError if unreadable."""
    if not text.strip():
        raise _problem(source, 1, "<root>", "empty file (expected a mapping of fields)")
    if fmt == "json":
        return _parse_json(text, source)
    deep = yaml_too_deep_line(text)
    if deep is not None:
        raise _problem(source, deep, "<root>", TOO_DEEP)
    loader = reader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        context = exc.context or ""
        if context and exc.context_mark and exc.context_mark.line != getattr(mark, "line", None):
            context += f" started at line {exc.context_mark.line + 1}"
        what = " ".join(p for p in (exc.problem, context and f"({context})") if p)
        column = f" at column {mark.column + 1}" if mark else ""
        raise _problem(source, line, "<root>", f"invalid YAML: {what}{column}") from None
    except yaml.reader.ReaderError as exc:
        char = (
            exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        )
        raise _problem(
            source,
            reader_error_line(text, exc),
            "<root>",
            f"invalid YAML: {exc.reason} (#x{char:04x})",
        ) from None
    except yaml.YAMLError as exc:
        raise _problem(source, 1, "<root>", f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    if root is None:
        raise _problem(
            source, 1, "<root>", "empty file (only comments; expected a mapping of fields)"
        )
    positions = SourceMap(root)
    duplicates = [
        SpecProblem(source, line, format_path(loc), msg)
        for loc, line, msg in positions.duplicate_keys()
    ]
    return data, positions, duplicates


class _LazyJsonMap:
    """Maps JSON lines only when a line is actually needed: valid specs skip it."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._map: JsonSourceMap | None = None

    def _built(self) -> JsonSourceMap:
        if self._map is None:
            self._map = JsonSourceMap(self._text)
        return self._map

    def line(self, loc: Sequence[int | str]) -> int:
        return self._built().line(loc)

    def duplicate_keys(self) -> list[tuple[tuple[int | str, ...], int, str]]:
        return self._built().duplicate_keys()


def _parse_json(text: str, source: str) -> tuple[Any, Positions, list[SpecProblem]]:
    saw_duplicate = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal saw_duplicate
        out = dict(items)
        saw_duplicate = saw_duplicate or len(out) != len(items)
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise _problem(
            source, exc.lineno, "<root>", f"invalid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    except RecursionError:
        raise _problem(source, json_too_deep_line(text), "<root>", TOO_DEEP) from None
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits()
        line = _line_of(text, re.search(r"[0-9]{4300}", text))
        raise _problem(
            source, line, "<root>", "invalid JSON: a number with over 4300 digits"
        ) from None
    if json_too_deep(data, text):
        raise _problem(source, json_too_deep_line(text), "<root>", TOO_DEEP)
    positions = _LazyJsonMap(text)
    duplicates: list[SpecProblem] = []
    if saw_duplicate:
        duplicates = [
            SpecProblem(source, line, format_path(loc), msg)
            for loc, line, msg in positions.duplicate_keys()
        ]
    return data, positions, duplicates


class _TriggersAsWritten:
    """`triggers: {kind: ...}` is validated as the list `[{kind: ...}]`: a problem of its item
    i is on the line of the mapping's i-th key."""

    def __init__(self, inner: Positions, kinds: list[str]) -> None:
        self._inner = inner
        self._kinds = kinds

    def line(self, loc: Sequence[int | str]) -> int:
        index = loc[1] if len(loc) >= 2 and loc[0] == "triggers" else None
        if isinstance(index, int) and 0 <= index < len(self._kinds):
            loc = ("triggers", self._kinds[index], *loc[3:])
        return self._inner.line(loc)

    def duplicate_keys(self) -> list[tuple[tuple[int | str, ...], int, str]]:
        return self._inner.duplicate_keys()


def _validate(
    data: Any, source: str, positions: Positions, model: type[M], rules: OutsideRules | None
) -> tuple[M | None, list[SpecProblem]]:
    """The model (None if invalid) and every problem: field errors plus, for specs, graph rules."""
    if model is DagSpec and isinstance(data, dict) and isinstance(data.get("triggers"), dict):
        positions = _TriggersAsWritten(positions, [str(k) for k in data["triggers"]])
    if not isinstance(data, dict):
        return None, [
            SpecProblem(
                source,
                positions.line(()),
                "<root>",
                f"top level must be a mapping of fields, got {kind_of(data)}",
            )
        ]
    problems: list[SpecProblem] = []
    result: M | None = None
    try:
        context = {SKIP_GRAPH_RULES: True, CALENDARS: rules.calendars if rules else None}
        result = model.model_validate(data, context=context)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            problems.append(
                SpecProblem(source, positions.line(loc), format_path(loc), humanize(model, err))
            )
    if model is DagSpec:
        if rules is None:
            raise TypeError("a spec is checked with the rules it is deployed under: pass them")
        spec = result if isinstance(result, DagSpec) else None
        for path, message in check_graph(spec if spec is not None else _salvage(data)):
            problems.append(SpecProblem(source, positions.line(parse_path(path)), path, message))
        if spec is not None:
            for path, message in check_calendar_blocks(spec):
                problems.append(
                    SpecProblem(source, positions.line(parse_path(path)), path, message)
                )
            for path, message in rules.gate_problems(spec):
                problems.append(
                    SpecProblem(source, positions.line(parse_path(path)), path, message)
                )
            for path, message in [*reserved_names(spec), *external_input_problems(spec)]:
                problems.append(
                    SpecProblem(source, positions.line(parse_path(path)), path, message)
                )
        if spec is not None and not problems:
            # Only on an otherwise valid spec: a duplicate out is reported once, by its own rule.
            for path, message in [
                *colliding_names(spec, rules.gate_floor()),
                *rules.deploy_problems(spec),
            ]:
                problems.append(
                    SpecProblem(source, positions.line(parse_path(path)), path, message)
                )
    return (result if not problems else None), problems


def _load_model(
    text: str, source: str, fmt: Format, model: type[M], rules: OutsideRules | None = None
) -> M:
    return _load_with_positions(text, source, fmt, model, rules)[0]


def _load_with_positions(
    text: str,
    source: str,
    fmt: Format,
    model: type[M],
    rules: OutsideRules | None = None,
    reader: type[SpecYamlLoader] = SpecYamlLoader,
) -> tuple[M, Positions]:
    data, positions, problems = _parse(text, source, fmt, reader)
    result, more = _validate(data, source, positions, model, rules)
    problems = sorted(dict.fromkeys([*problems, *more]), key=lambda p: p.line)
    if problems or result is None:
        raise SpecError(problems)
    return result, positions


def load_document(
    path: str | Path,
    model: type[M],
    rules: OutsideRules | None = None,
    reader: type[SpecYamlLoader] = SpecYamlLoader,
) -> tuple[M, Positions]:
    """A config file the spec rules apply to (e.g. deploy/policies/promotion.yaml), with the
    lines of its fields, so a rule that compares a spec with it can cite both files; a spec
    (model DagSpec) with the `rules` it is checked under. `reader`: a YAML loader that types
    scalars differently (a calendar file reads every scalar as text, so a bad date is a field
    error, not a YAML one)."""
    source = str(path)
    fmt = _format_of(Path(path), source)
    return _load_with_positions(
        _decode(_read(Path(path), source), source), source, fmt, model, rules, reader
    )


def _line_of(text: str, match: re.Match[str] | None) -> int:
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _strings(value: Any) -> list[Any]:
    """Keep list positions (they are in error paths); drop what is not a string."""
    if not isinstance(value, list):
        return []
    return [v if isinstance(v, str) else None for v in value]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _salvage(data: dict[str, Any]) -> DagSpec:
    """An unvalidated DagSpec with just ids, ins, outs, edges and the names of external inputs,
    for the graph rules.

    It lets a file with a bad quantity in one node still get its cycle reported
    in the same run; fields the rules do not read are left out.
    """
    nodes_value, edges_value = data.get("nodes"), data.get("edges")
    raw_nodes = nodes_value if isinstance(nodes_value, list) else []
    raw_edges = edges_value if isinstance(edges_value, list) else []

    def node(raw: Any) -> Node:
        raw = raw if isinstance(raw, dict) else {}
        # Every field given: model_construct's default lookup is slow on 10,000 nodes.
        return Node.model_construct(
            id=_text(raw.get("id")),
            kind=None,
            image=None,
            params={},
            env={},
            resources=None,
            ins=_strings(raw.get("ins")),
            outs=_strings(raw.get("outs")),
        )

    nodes = [node(raw) for raw in raw_nodes]
    edges = [
        Edge.model_construct(from_=_text(raw.get("from")), to=_text(raw.get("to")))
        if isinstance(raw, dict)
        else Edge.model_construct(from_=None, to=None)
        for raw in raw_edges
    ]
    external = data.get("external_inputs")
    names = {k: None for k in external if isinstance(k, str)} if isinstance(external, dict) else {}
    return DagSpec.model_construct(nodes=nodes, edges=edges, external_inputs=names)
