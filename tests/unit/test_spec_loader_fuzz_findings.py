"""What fuzzing the spec loader found (tests/unit/test_spec_loader_fuzz.py), one test each.

Before the fixes each of these documents escaped the loader as a bare exception
(OverflowError, ValueError, KeyError, AttributeError, RecursionError), hung it for
minutes, or produced a "one-line" problem spanning lines or kilobytes.
"""
from __future__ import annotations

import json
import time

import pytest

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import Format, load_spec_text
from quantos_assets.spec.nesting import MAX_NESTING

NODE = "{id: a, kind: python_task, outs: [x]}"


def problems(text: str, fmt: Format = "yaml") -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, f"f.{fmt}", fmt)
    lines = str(caught.value).split("\n")
    assert lines == caught.value.lines
    return lines


def spec(**fields: str) -> str:
    """A valid one-node spec with some top-level fields replaced or added (YAML)."""
    base = {"version": "1", "pipeline_id": "p", "nodes": f"[{NODE}]", **fields}
    return "".join(f"{k}: {v}\n" for k, v in base.items())


# --- values that overflowed in the quantity parsers -------------------------


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("cpu", "1" + "0" * 400, "cpu is out of range: a 401-digit number"),
        ("mem", "1" + "0" * 400, "mem is out of range: a 401-digit number"),
        ("mem", "'" + "9" * 400 + "Gi'", "mem must be a finite quantity"),
    ],
)
def test_huge_resource_quantities(field: str, value: str, fragment: str) -> None:
    lines = problems(spec(resources=f"{{default: {{{field}: {value}}}}}"))
    assert len(lines) == 1 and lines[0].startswith(f"f.yaml:4: resources.default.{field}: "), lines
    assert fragment in lines[0]


def test_huge_max_runtime() -> None:
    lines = problems(spec(slo="{max_runtime: 1" + "0" * 400 + "}"))
    assert lines[0].startswith("f.yaml:4: slo.max_runtime: duration is out of range"), lines


# --- YAML scalars the constructors rejected with plain exceptions -----------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2016-02-30", "cannot read '2016-02-30' as !!timestamp: day is out of range for month"),
        ("2016-02-28 25:00:00", "hour must be in 0..23"),
        ('!!bool "1"', "cannot read '1' as !!bool"),
        ('!!timestamp "1"', "cannot read '1' as !!timestamp"),
        ("!!int x", "cannot read 'x' as !!int"),
    ],
)
def test_yaml_scalars_their_constructor_rejects(value: str, fragment: str) -> None:
    text = f"version: 1\npipeline_id: p\npartitions: {{calendar: XNYS,\n  start: {value}}}\nnodes: [{NODE}]\n"
    lines = problems(text)
    assert len(lines) == 1 and lines[0].startswith("f.yaml:4: <root>: invalid YAML: "), lines
    assert fragment in lines[0], lines


def test_an_implicit_timestamp_gets_the_quote_hint() -> None:
    (line,) = problems(spec(labels="{day: 2016-02-30}"))
    assert line.endswith("(quote it to make it a string) at column 15"), line


def test_yaml_int_longer_than_python_converts() -> None:
    (line,) = problems(spec(labels="{n: 1}", description="x\nx: " + "1" * 5000))
    assert line.startswith("f.yaml:6: <root>: invalid YAML: cannot read '1111"), line
    assert "Exceeds the limit (4300 digits)" in line and "set_int_max_str_digits" not in line


@pytest.mark.parametrize("number", ["0x" + "f" * 4000, "0b" + "1" * 15000])
def test_yaml_hex_or_binary_int_too_long_to_print(number: str) -> None:
    """No digit limit applies to base 16/2, but quoting the value in a message would fail."""
    (line,) = problems(spec(resources=f"{{default: {{gpu: {number}}}}}"))
    assert line.startswith(f"f.yaml:4: <root>: invalid YAML: cannot read '{number[:37]}'"), line
    assert "more than 4300 digits" in line


def test_json_int_longer_than_python_converts() -> None:
    text = '{"version": 1,\n "pipeline_id": "p",\n "labels": {"n": ' + "1" * 5000 + "}}"
    assert problems(text, "json") == ["f.json:3: <root>: invalid JSON: a number with over 4300 digits"]


# --- control characters and line breaks --------------------------------------


def test_control_character_in_yaml_names_its_line() -> None:
    (line,) = problems("version: 1\npipeline_id: p\ndescription: a\x84b\nnodes: []\n")
    assert line == "f.yaml:3: <root>: invalid YAML: control characters are not allowed (#x0084)"


def test_line_break_in_a_key_stays_on_one_line() -> None:
    (line,) = problems(spec(slo='{"\\nmax\\u2028": 1}'))
    assert line.startswith("f.yaml:4: slo['\\nmax\\u2028']: unknown field '\\nmax\\u2028'"), line


# --- huge values quoted in messages -------------------------------------------


def test_a_huge_quoted_value_is_elided_in_the_middle() -> None:
    lines = problems(spec(version="1" * 4000))
    assert len(lines) == 1 and len(lines[0]) < 300, len(lines[0])
    assert lines[0].startswith("f.yaml:1: version: unsupported spec version 1111"), lines
    assert " ... " in lines[0] and lines[0].endswith("(this orchestrator reads version 1)")


def test_a_huge_key_is_elided_in_the_path() -> None:
    # an explicit key: libyaml allows implicit ones up to 1024 characters
    (line,) = problems(spec(slo="\n  ? " + "k" * 5000 + "\n  : 1"))
    path = line.split(": ")[1]
    assert len(path) <= 100 and path.startswith("slo.kkk") and " ... " in path, line


# --- nesting: quadratic in libyaml, RecursionError in json --------------------


@pytest.mark.parametrize(
    ("text", "fmt", "line"),
    [
        ("[" * 100_000 + "]" * 100_000, "yaml", 1),
        ("a:\n  b: " + "{c: " * 50_000 + "1" + "}" * 50_000, "yaml", 2),
        ("[" * 100_000 + "]" * 100_000, "json", 1),
        ('{"nodes": [{"params":\n {"a": ' + "[" * 300 + "]" * 300 + "}}]}", "json", 2),
        ("a:\n" + "".join("  " * i + "-\n" for i in range(1, 300)), "yaml", MAX_NESTING + 1),
    ],
    ids=["yaml-flow-100k", "yaml-map-50k", "json-100k", "json-300", "yaml-block-300"],
)
def test_nesting_past_the_bound_is_one_quick_error(text: str, fmt: Format, line: int) -> None:
    started = time.monotonic()
    lines = problems(text, fmt)
    assert time.monotonic() - started < 2, "deep nesting must not be slow"
    assert lines == [f"f.{fmt}:{line}: <root>: nested more than {MAX_NESTING} levels deep (a spec needs a handful)"]


def test_nesting_within_the_bound_still_loads() -> None:
    deep = "[" * (MAX_NESTING - 5) + "]" * (MAX_NESTING - 5)
    params = f"{{id: a, kind: python_task, params: {{deep: {deep}}}, outs: [x]}}"
    assert load_spec_text(spec(nodes=f"[{params}]"), "f.yaml", "yaml").spec.nodes[0].params["deep"]
    as_json = json.dumps({"version": 1, "pipeline_id": "p", "nodes": [
        {"id": "a", "kind": "python_task", "params": {"deep": json.loads(deep)}, "outs": ["x"]}
    ]})
    assert load_spec_text(as_json, "f.json", "json").spec.pipeline_id == "p"
