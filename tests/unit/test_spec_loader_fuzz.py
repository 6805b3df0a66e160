"""Fuzzing the spec loader: whatever arrives, a LoadedSpec or the loader's own SpecError.

Specs reach the loader from the compiler, the REST gateway and Kafka, so it sees truncated
uploads, wrong encodings, hand edits and hostile YAML (alias bombs, deep nesting, huge
numbers, exotic tags). Whatever the bytes, the caller must get either a valid spec or a
`SpecError` whose every line is `FILE:LINE: field.path: message` on one line, quickly: any
other exception is a traceback in the CLI, a 500 from the gateway or a code location that
fails to load, and a slow input is a denial of service.

Documents are structured mutations of the valid specs in `specs/` and `tests/fixtures/`
(values replaced, keys dropped or added, then the text edited), random bytes and text,
deep nesting, huge numbers, YAML tags and alias bombs.

Profiles (`HYPOTHESIS_PROFILE`): `suite` (default) runs a few seconds in `make test`;
`fuzz` (`make fuzz`) gives the targets `QUANTOS_FUZZ_SECONDS` between them (600 by default),
each calling its property again and again with fresh random examples until its share is
spent. A failure prints the shrunk document; the example database under
`.quantos/hypothesis` replays it first next time.
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.database import DirectoryBasedExampleDatabase

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import Format, LoadedSpec, load_runtime_params_text
from quantos_assets.spec.models import RuntimeParams
from quantos_assets.spec_rules.firm import load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[2]
_DB = DirectoryBasedExampleDatabase(str(REPO / ".quantos" / "hypothesis"))
# Loads of these documents take milliseconds; a second is a hang on a busy 2-core box.
_DEADLINE = timedelta(seconds=2)
_COMMON: dict[str, Any] = {
    "deadline": _DEADLINE,
    "database": _DB,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile("suite", max_examples=40, **_COMMON)
# Fuzz: many short rounds, so the time budget is kept to within a round.
settings.register_profile("fuzz", max_examples=300, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "suite")
settings.load_profile(PROFILE)
FUZZ_SECONDS = float(os.environ.get("QUANTOS_FUZZ_SECONDS", "600")) if PROFILE == "fuzz" else 0.0
# Number of fuzz targets below: each gets an equal share of FUZZ_SECONDS.
TARGETS = 9
# A process stuck this long in one load (even inside C code) is killed with a traceback.
_WATCHDOG_SECONDS = 60

LINE = re.compile(r"^(?P<source>.+?):(?P<line>[0-9]+): (?P<path>\S.*?): (?P<message>\S.*)$")
# A problem line quotes at most a short excerpt of what the author wrote.
MAX_LINE = 400


def _seed_files() -> list[Path]:
    found = sorted(REPO.glob("specs/*.y*ml")) + sorted(REPO.glob("tests/fixtures/**/*.y*ml"))
    found += sorted(REPO.glob("tests/fixtures/**/*.json"))
    return [p for p in found if "openlineage" not in p.parts]


def _seed_documents() -> list[dict[str, Any]]:
    """The example specs and fixtures that parse to a mapping (valid ones and the rest)."""
    docs = []
    for path in _seed_files():
        try:
            data = (
                yaml.safe_load(path.read_text())
                if path.suffix != ".json"
                else json.loads(path.read_text())
            )
        except (yaml.YAMLError, ValueError):
            continue
        if isinstance(data, dict) and ("nodes" in data or "submission_id" in data):
            docs.append(data)
    return docs


SEEDS = _seed_documents()
SPEC_SEEDS = [d for d in SEEDS if "nodes" in d]
PARAM_SEEDS = [d for d in SEEDS if "submission_id" in d]

# Field names of the models, so added keys often land on real fields and go deep.
FIELD_NAMES = sorted(
    {
        "version",
        "pipeline_id",
        "description",
        "labels",
        "slo",
        "resources",
        "nodes",
        "edges",
        "schedule",
        "partitions",
        "freshness",
        "triggers",
        "gates",
        "max_runtime",
        "retry",
        "max_attempts",
        "backoff_sec",
        "priority",
        "qos",
        "default",
        "cpu",
        "mem",
        "gpu",
        "id",
        "kind",
        "image",
        "params",
        "env",
        "ins",
        "outs",
        "backfill",
        "from",
        "to",
        "calendar",
        "at",
        "timezone",
        "catch_up",
        "start",
        "max_lag_sessions",
        "deadline",
        "kafka_lag",
        "topic",
        "group",
        "threshold",
        "min_interval",
        "model",
        "metrics",
        "require",
        "stages",
        "submission_id",
        "secrets_scope",
        "affinity",
        "compute_pool",
        "ttl_days",
        "entrypoint",
    }
)
# Values that sit on the edges of the spec's parsers.
TRICKY_STRINGS = [
    "",
    " ",
    "\n",
    "\t",
    "0",
    "-1",
    "1e999",
    "-1e999",
    "nan",
    "NaN",
    "inf",
    "9" * 5000,
    "1" * 400 + "Gi",
    "9" * 400 + "m",
    "1e400",
    "0.0000001m",
    "500m",
    "16Gi",
    "1Pi",
    "2h",
    "1h30m",
    "9" * 400 + "d",
    "0s",
    "close+30m",
    "open-1h",
    "close+99999999999999999h",
    "XNYS",
    "XXXX",
    "America/New_York",
    "../../etc",
    "2016-01-04",
    "2016-02-30",
    "0001-01-01",
    "9999-12-31",
    "^[",
    "^(a+)+$",
    ">= 1.0",
    "<= 0.2",
    ">= 1e999",
    "== nan",
    "a" * 300,
    "é" * 70,
    "\u202e",
    "\x00",
    "\ufeff",
    "🙂",
    "python_task",
    "ray_job",
    "single_run",
    "per_session",
    "staging",
    "prod",
    "model_uri",
    "metrics_json",
]


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
        st.sampled_from(TRICKY_STRINGS),
        st.dates(),
    )


def _values() -> st.SearchStrategy[Any]:
    keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
    return st.recursive(
        _scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=12,
    )


def _paths(doc: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `doc` (the root excluded)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*here, key)
            yield from _paths(value, (*here, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield (*here, i)
            yield from _paths(value, (*here, i))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _copy(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    return doc


@st.composite
def mutated_documents(draw: st.DrawFn, seeds: list[dict[str, Any]]) -> Any:
    """A seed document with 1-4 structural edits: replace, drop, add, duplicate, retype."""
    doc = _copy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(doc, path), path[-1]
        op = draw(st.sampled_from(["replace", "drop", "add", "duplicate", "retype", "tricky"]))
        if op == "replace":
            parent[key] = draw(_values())
        elif op == "tricky":
            parent[key] = draw(st.sampled_from(TRICKY_STRINGS))
        elif op == "drop":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(st.sampled_from(FIELD_NAMES), _scalars()))] = draw(_values())
        elif op == "add":
            parent.insert(key, draw(_values()))
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(_copy(parent[key]))
        elif op == "retype":
            value = parent[key]
            parent[key] = (
                list(value.values())
                if isinstance(value, dict)
                else {str(i): v for i, v in enumerate(value)}
                if isinstance(value, list)
                else [value]
            )
    return doc


def _json_keys(doc: Any) -> Any:
    """JSON keys are strings: YAML's dates and nulls as keys become their text."""
    if isinstance(doc, dict):
        return {
            k if isinstance(k, (str, int, float, bool)) or k is None else str(k): _json_keys(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_json_keys(v) for v in doc]
    return doc


def _dump(doc: Any, fmt: str, style: int) -> str:
    if fmt == "json":
        return json.dumps(
            _json_keys(doc),
            default=str,
            ensure_ascii=bool(style & 1),
            indent=2 if style & 2 else None,
        )
    return yaml.safe_dump(
        doc,
        sort_keys=False,
        allow_unicode=bool(style & 1),
        default_flow_style=bool(style & 2) or None,
    )


# Pieces of YAML/JSON syntax spliced into a text: they break it in the ways people do.
SYNTAX = [
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "#",
    "|",
    ">",
    "? ",
    "\t",
    "\n",
    "  ",
    "&a ",
    "*a",
    "&a [1, 2]",
    "<<: *a\n",
    "<<: [*a, *a]\n",
    "!!binary ",
    "!!timestamp ",
    "!!int ",
    "!!float ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "!custom ",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "\\",
    "\\u",
    "\\ud800",
    "\r",
    "\x85",
    "\u2028",
    "\ufeff",
    "null",
    "true",
    "1e400",
    "9" * 4400,
    "2016-02-30",
    "2016-02-28T25:61:00",
]


@st.composite
def edited_texts(draw: st.DrawFn, text: str) -> str:
    """`text` with a few character-level edits: deletions, splices, duplicated lines."""
    for _ in range(draw(st.integers(0, 3))):
        if not text:
            break
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "truncate", "dup_line", "indent"]))
        if op == "insert":
            piece = draw(st.one_of(st.sampled_from(SYNTAX), st.text(max_size=8)))
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif op == "truncate":
            text = text[:at]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(
                i, lines[i] if op == "dup_line" else " " * draw(st.integers(1, 4)) + lines[i]
            )
            text = "\n".join(lines)
    return text


# --------------------------------------------------------------------------- the property


@contextmanager
def _watchdog() -> Iterator[None]:
    """Kill the process with every thread's traceback if one load hangs, even in C code
    (hypothesis' deadline only judges examples that finish)."""
    faulthandler.dump_traceback_later(_WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def check_outcome(load: Callable[[], Any], source: str, text: str | bytes, expect: type) -> None:
    """`load()` returns an `expect` or raises a SpecError of well-formed one-line problems."""
    if currently_in_test_context():
        note(f"document ({source}): {text[:3000]!r}")
    with _watchdog():
        try:
            result = load()
        except SpecError as err:
            _check_error(err, source, text)
            return
    assert isinstance(result, expect), type(result)


def _check_error(err: SpecError, source: str, text: str | bytes) -> None:
    lines = str(err).split("\n")
    assert lines and lines == err.lines, err.lines
    # YAML also breaks lines at \r, NEL and LS/PS: splitlines() counts at least as many.
    decoded = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    last = len(decoded.splitlines()) + 1
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"not FILE:LINE: path: message: {line!r}"
        assert match["source"] == source, line
        assert 1 <= int(match["line"]) <= last, (
            f"line {match['line']} of a {last}-line file: {line!r}"
        )
        assert len(line) <= MAX_LINE + len(source), f"{len(line)}-character line: {line[:300]!r}..."
    for problem in err.problems:
        assert "\n" not in problem.message and "\r" not in problem.message, problem


def _spec_text(text: str, fmt: Format) -> None:
    source = f"fuzz.{fmt}"
    check_outcome(lambda: load_spec_text(text, source, fmt), source, text, LoadedSpec)


def _fuzz(*props: Callable[[], None]) -> None:
    """Run @given properties once each, or, under the fuzz profile, again and again with
    fresh examples until this target's share of the budget is spent."""
    stop = time.monotonic() + FUZZ_SECONDS / TARGETS
    while True:
        for prop in props:
            prop()
        if time.monotonic() >= stop:
            return


# --------------------------------------------------------------------------- the targets


@given(
    doc=mutated_documents(SPEC_SEEDS),
    fmt=st.sampled_from(["yaml", "json"]),
    style=st.integers(0, 3),
)
def _structured(doc: Any, fmt: Format, style: int) -> None:
    _spec_text(_dump(doc, fmt, style), fmt)


def test_structured_mutations_of_the_example_specs() -> None:
    _fuzz(_structured)


@given(data=st.data(), fmt=st.sampled_from(["yaml", "json"]), style=st.integers(0, 3))
def _edited(data: st.DataObject, fmt: Format, style: int) -> None:
    doc = data.draw(mutated_documents(SPEC_SEEDS))
    _spec_text(data.draw(edited_texts(_dump(doc, fmt, style))), fmt)


def test_text_edits_of_mutated_specs() -> None:
    _fuzz(_edited)


@given(data=st.data(), fmt=st.sampled_from(["yaml", "json"]))
def _params(data: st.DataObject, fmt: Format) -> None:
    doc = data.draw(mutated_documents(PARAM_SEEDS))
    text = data.draw(edited_texts(_dump(doc, fmt, data.draw(st.integers(0, 3)))))
    source = f"params.{fmt}"
    check_outcome(
        lambda: load_runtime_params_text(text, source, fmt),
        source,
        text,
        RuntimeParams,
    )


def test_runtime_params_mutations() -> None:
    _fuzz(_params)


_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]


@given(
    data=st.data(),
    suffix=st.sampled_from([".yaml", ".yml", ".json", ".YAML", ".txt", ""]),
    encoding=st.sampled_from(_ENCODINGS),
)
def _files(data: st.DataObject, suffix: str, encoding: str, tmp: Path) -> None:
    fmt = "json" if suffix == ".json" else "yaml"
    doc = data.draw(mutated_documents(SPEC_SEEDS))
    raw = _dump(doc, fmt, data.draw(st.integers(0, 3))).encode(encoding, errors="replace")
    if data.draw(st.booleans()):  # flip a few bytes
        buf = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            if buf:
                buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        raw = bytes(buf)
    path = tmp / f"spec{suffix}"
    path.write_bytes(raw)
    check_outcome(lambda: load_spec(path), str(path), raw, LoadedSpec)


def test_files_in_other_encodings_and_flipped_bytes(tmp_path: Path) -> None:
    _fuzz(lambda: _files(tmp=tmp_path))


@given(raw=st.binary(max_size=4000), suffix=st.sampled_from([".yaml", ".json"]))
def _bytes(raw: bytes, suffix: str, tmp: Path) -> None:
    path = tmp / f"random{suffix}"
    path.write_bytes(raw)
    check_outcome(lambda: load_spec(path), str(path), raw, LoadedSpec)


@given(text=st.text(max_size=2000), fmt=st.sampled_from(["yaml", "json"]))
def _text(text: str, fmt: Format) -> None:
    _spec_text(text, fmt)


def test_random_bytes_and_unicode(tmp_path: Path) -> None:
    _fuzz(lambda: _bytes(tmp=tmp_path), _text)


def _nest(depth: int, style: str) -> str:
    """A value nested `depth` levels deep, written inline (flow/JSON) or as a block."""
    if style == "flow_list":
        return "[" * depth + "1" + "]" * depth
    if style == "flow_map":
        return "{a: " * depth + "1" + "}" * depth
    if style == "json_list":
        return "[" * depth + "1" + "]" * depth
    if style == "json_map":
        return '{"a": ' * depth + "1" + "}" * depth
    if style == "block_list":
        return "\n" + "".join("  " * i + "-\n" for i in range(1, depth)) + "  " * depth + "- 1"
    return "\n" + "".join("  " * i + "a:\n" for i in range(1, depth)) + "  " * depth + "a: 1"


BASE_YAML = """version: 1
pipeline_id: deep
nodes:
  - id: a
    kind: python_task
    params:
      entrypoint: quantos_assets.tasks.noop:one_row
      config: {value}
    outs: [x]
"""
BASE_JSON = (
    '{{"version": 1, "pipeline_id": "deep", "nodes": [{{"id": "a", "kind": "python_task", '
    '"params": {{"entrypoint": "quantos_assets.tasks.noop:one_row", "config": {value}}}, '
    '"outs": ["x"]}}]}}'
)


@given(
    depth=st.one_of(st.integers(1, 200), st.integers(200, 60_000)),
    style=st.sampled_from(
        ["flow_list", "flow_map", "json_list", "json_map", "block_list", "block_map"]
    ),
    where=st.sampled_from(["root", "params"]),
)
def _deep(depth: int, style: str, where: str) -> None:
    if style.startswith("block"):
        depth = min(depth, 700)  # a block level costs a line of its own depth: 700 is ~0.5 MB
    value = _nest(depth, style)
    fmt: Format = "json" if style.startswith("json") else "yaml"
    if where == "root":
        text = value.lstrip("\n")
    elif fmt == "json":
        text = BASE_JSON.format(value=value)
    else:
        text = BASE_YAML.format(
            value=value.replace("\n", "\n      ") if style.startswith("block") else value
        )
    _spec_text(text, fmt)


def test_deep_nesting() -> None:
    _fuzz(_deep)


NUMERIC_FIELDS_YAML = {
    "version": "version: {n}\npipeline_id: p\nnodes: [{{id: a, kind: python_task, outs: [x]}}]\n",
    "gpu": (
        "version: 1\npipeline_id: p\nresources: {{default: {{gpu: {n}}}}}\nnodes: [{{id: a, kind: "
        "python_task, outs: [x]}}]\n"
    ),
    "cpu": (
        "version: 1\npipeline_id: p\nresources: {{default: {{cpu: {n}}}}}\nnodes: [{{id: a, kind: "
        "python_task, outs: [x]}}]\n"
    ),
    "mem": (
        "version: 1\npipeline_id: p\nresources: {{default: {{mem: {n}}}}}\nnodes: [{{id: a, kind: "
        "python_task, outs: [x]}}]\n"
    ),
    "cpu_str": (
        "version: 1\npipeline_id: p\nresources: {{default: {{cpu: '{n}'}}}}\nnodes: [{{id: a, "
        "kind: python_task, outs: [x]}}]\n"
    ),
    "mem_str": (
        "version: 1\npipeline_id: p\nresources: {{default: {{mem: '{n}Gi'}}}}\nnodes: [{{id: a, "
        "kind: python_task, outs: [x]}}]\n"
    ),
    "retry": (
        "version: 1\npipeline_id: p\nslo: {{retry: {{max_attempts: {n}, backoff_sec: "
        "{n}}}}}\nnodes: [{{id: a, kind: python_task, outs: [x]}}]\n"
    ),
    "runtime": (
        "version: 1\npipeline_id: p\nslo: {{max_runtime: {n}}}\nnodes: [{{id: a, kind: "
        "python_task, outs: [x]}}]\n"
    ),
    "runtime_str": (
        "version: 1\npipeline_id: p\nslo: {{max_runtime: '{n}h'}}\nnodes: [{{id: a, kind: "
        "python_task, outs: [x]}}]\n"
    ),
    "param": (
        "version: 1\npipeline_id: p\nnodes: [{{id: a, kind: python_task, params: {{n: {n}}}, "
        "outs: [x]}}]\n"
    ),
    "lag": (
        "version: 1\npipeline_id: p\nfreshness: {{max_lag_sessions: {n}}}\nnodes: [{{id: a, kind: "
        "python_task, outs: [x]}}]\n"
    ),
    "trigger": (
        "version: 1\npipeline_id: p\ntriggers: [{{kafka_lag: {{topic: t, group: g, threshold: "
        "{n}, min_interval: {n}}}}}]\nnodes: [{{id: a, kind: python_task, outs: [x]}}]\n"
    ),
    "gate": (
        "version: 1\npipeline_id: p\ngates: {{model: x, metrics: x, require: {{sharpe: '>= "
        "{n}'}}}}\nnodes: [{{id: a, kind: python_task, outs: [x]}}]\n"
    ),
}


@st.composite
def huge_numbers(draw: st.DrawFn) -> str:
    digits = draw(st.integers(1, 6000))
    body = draw(st.sampled_from("123456789")) + "0" * (digits - 1)
    shape = draw(
        st.sampled_from(["int", "neg", "float", "exp", "hex", "octal", "underscore", "tiny"])
    )
    return {
        "int": body,
        "neg": "-" + body,
        "float": body + ".5",
        "exp": f"1e{body[:6]}",
        "hex": "0x" + "f" * digits,
        "octal": "0o" + "7" * digits,
        "underscore": "1_000_" + body,
        "tiny": "0." + "0" * digits + "1",
    }[shape]


@given(
    number=huge_numbers(),
    field=st.sampled_from(sorted(NUMERIC_FIELDS_YAML)),
    fmt=st.sampled_from(["yaml", "json"]),
)
def _huge(number: str, field: str, fmt: Format) -> None:
    template = NUMERIC_FIELDS_YAML[field]
    if fmt == "yaml":
        text = template.format(n=number)
    else:  # the same document as JSON, the number as a bare JSON number token
        data = yaml.safe_load(template.format(n="__N__"))
        text = json.dumps(data).replace('"__N__"', number).replace("__N__", number)
    _spec_text(text, fmt)


def test_huge_numbers() -> None:
    _fuzz(_huge)


TAGS = [
    "!!str",
    "!!int",
    "!!float",
    "!!bool",
    "!!null",
    "!!binary",
    "!!timestamp",
    "!!set",
    "!!omap",
    "!!pairs",
    "!!seq",
    "!!map",
    "!!merge",
    "!!value",
    "!!python/object:os.system",
    "!!python/name:os.system",
    "!custom",
    "!",
    "tag:yaml.org,2002:int",
]
TAG_VALUES = [
    "1",
    "x",
    "",
    "2016-02-30",
    "2016-02-28 25:00:00",
    "2016-01-04T10:00:00+99:00",
    "AAAA",
    "!!!",
    "0x",
    "0b2",
    "1e400",
    "9" * 4400,
    "[1, 2]",
    "{a: 1}",
    "[[a, 1]]",
    "[a, a]",
    "~",
]


@given(
    tag=st.sampled_from(TAGS),
    value=st.one_of(st.sampled_from(TAG_VALUES), st.text(max_size=10)),
    where=st.sampled_from(
        ["version", "pipeline_id", "params", "partitions_start", "labels", "nodes"]
    ),
)
def _tags(tag: str, value: str, where: str) -> None:
    node = "{id: a, kind: python_task, outs: [x]}"
    tagged = f"{tag} {json.dumps(value) if value and value[0] not in '[{' else value or '_'}"
    text = {
        "version": f"version: {tagged}\npipeline_id: p\nnodes: [{node}]\n",
        "pipeline_id": f"version: 1\npipeline_id: {tagged}\nnodes: [{node}]\n",
        "params": (
            "version: 1\npipeline_id: p\nnodes: [{id: a, kind: python_task, params: {k: "
            f"{tagged}}}, outs: [x]}}]\n"
        ),
        "partitions_start": (
            f"version: 1\npipeline_id: p\npartitions: {{calendar: XNYS, start: {tagged}}}\nnodes: "
            f"[{node}]\n"
        ),
        "labels": f"version: 1\npipeline_id: p\nlabels: {tagged}\nnodes: [{node}]\n",
        "nodes": f"version: 1\npipeline_id: p\nnodes: {tagged}\n",
    }[where]
    _spec_text(text, "yaml")


@given(
    value=st.sampled_from(
        [
            "2016-02-30",
            "2016-13-01",
            "2016-00-10",
            "2016-02-28 25:00:00",
            "2016-02-28t10:61",
            "2016-2-3",
            "0000-01-01",
            "2016-02-28T10:00:00.1234567890123+05:00",
            "1e400",
            "0x1g",
            "0b",
            "0o9",
            "-0x",
            "1:2:3:4",
            "190:20:30",
            ".inf",
            "-.Inf",
            ".NaN",
            "0_0",
            "+",
            "-",
        ]
    ),
    where=st.sampled_from(["partitions_start", "params", "version", "gpu", "label_key"]),
)
def _implicit(value: str, where: str) -> None:
    """Plain scalars YAML 1.1 resolves implicitly (timestamps, sexagesimal, hex, .inf)."""
    node = "{id: a, kind: python_task, outs: [x]}"
    text = {
        "partitions_start": (
            f"version: 1\npipeline_id: p\npartitions: {{calendar: XNYS, start: {value}}}\nnodes: "
            f"[{node}]\n"
        ),
        "params": (
            "version: 1\npipeline_id: p\nnodes: [{id: a, kind: python_task, params: {k: "
            f"{value}}}, outs: [x]}}]\n"
        ),
        "version": f"version: {value}\npipeline_id: p\nnodes: [{node}]\n",
        "gpu": (
            f"version: 1\npipeline_id: p\nresources: {{default: {{gpu: {value}}}}}\nnodes: "
            f"[{node}]\n"
        ),
        "label_key": f"version: 1\npipeline_id: p\nlabels: {{{value}: x}}\nnodes: [{node}]\n",
    }[where]
    _spec_text(text, "yaml")


def test_yaml_tags_and_implicit_scalars() -> None:
    _fuzz(_tags, _implicit)


def _laughs(levels: int, width: int, where: str) -> str:
    """The billion laughs: each anchor is a list of `width` aliases of the one before."""
    lines = ["lol0: &l0 [lol]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    top = f"*l{levels - 1}"
    anchors = "\n".join("  " + line for line in lines)
    node = "{id: a, kind: python_task, outs: [x]}"
    return {
        "params": (
            f"version: 1\npipeline_id: p\nx_anchors:\n{anchors}\nnodes: [{{id: a, kind: "
            f"python_task, params: {{bomb: {top}}}, outs: [x]}}]\n"
        ),
        "labels": f"version: 1\npipeline_id: p\nlabels:\n{anchors}\nnodes: [{node}]\n",
        "nodes": (
            "version: 1\npipeline_id: p\nx: "
            f"{{\n{anchors.replace(chr(10), ',' + chr(10))}\n}}\nnodes: {top}\n"
        ),
        "ins": (
            f"version: 1\npipeline_id: p\nanchors:\n{anchors}\nnodes: [{{id: a, kind: "
            f"python_task, ins: {top}, outs: [x]}}]\n"
        ),
        "edges": (
            f"version: 1\npipeline_id: p\nanchors:\n{anchors}\nnodes: [{node}]\nedges: {top}\n"
        ),
        "merge": (
            "version: 1\npipeline_id: p\nbase: &b {id: a, kind: python_task, outs: [x], params: "
            f"{{bomb: {top}}}}}\nanchors:\n{anchors}\nnodes: [{{<<: *b}}, {{<<: *b, id: c}}]\n"
        ),
    }[where]


@given(
    levels=st.integers(1, 12),
    width=st.integers(2, 10),
    where=st.sampled_from(["params", "labels", "nodes", "ins", "edges", "merge"]),
)
def _bomb(levels: int, width: int, where: str) -> None:
    _spec_text(_laughs(levels, width, where), "yaml")


def test_alias_bombs() -> None:
    _fuzz(_bomb)


def test_the_seed_documents_are_found() -> None:
    """The mutations start from real specs: if the examples move, the fuzzing must not
    silently fall back to mutating nothing."""
    assert len(SPEC_SEEDS) >= 3 and PARAM_SEEDS, [p.name for p in _seed_files()]


@pytest.mark.parametrize("path", _seed_files(), ids=lambda p: p.name)
def test_every_seed_file_loads_or_reports(path: Path) -> None:
    """The unmutated seeds go through the same property (most of them are valid)."""
    raw = path.read_bytes()
    check_outcome(lambda: load_spec(path), str(path), raw, LoadedSpec)
