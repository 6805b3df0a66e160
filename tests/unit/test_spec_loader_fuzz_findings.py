"""What fuzzing the spec loader found (tests/unit/test_spec_loader_fuzz.py), one test each.

Before the fixes each of these documents escaped the loader as a bare exception
(OverflowError, ValueError, KeyError, AttributeError, RecursionError), hung it for
minutes, or produced a "one-line" problem spanning lines or kilobytes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import Format
from quantos_assets.spec.nesting import MAX_NESTING
from quantos_assets.spec_rules.firm import load_spec_text

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
    text = (
        f"version: 1\npipeline_id: p\npartitions: {{calendar: XNYS,\n  start: {value}}}\nnodes: "
        f"[{NODE}]\n"
    )
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
    assert problems(text, "json") == [
        "f.json:3: <root>: invalid JSON: a number with over 4300 digits"
    ]


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
    assert lines == [
        (
            f"f.{fmt}:{line}: <root>: nested more than {MAX_NESTING} levels deep (a spec needs a "
            "handful)"
        )
    ]


def test_nesting_within_the_bound_still_loads() -> None:
    deep = "[" * (MAX_NESTING - 5) + "]" * (MAX_NESTING - 5)
    params = f"{{id: a, kind: python_task, params: {{deep: {deep}}}, outs: [x]}}"
    assert load_spec_text(spec(nodes=f"[{params}]"), "f.yaml", "yaml").spec.nodes[0].params["deep"]
    as_json = json.dumps(
        {
            "version": 1,
            "pipeline_id": "p",
            "nodes": [
                {
                    "id": "a",
                    "kind": "python_task",
                    "params": {"deep": json.loads(deep)},
                    "outs": ["x"],
                }
            ],
        }
    )
    assert load_spec_text(as_json, "f.json", "json").spec.pipeline_id == "p"


# --- aliases: shared when composed, expanded by whatever walks the values later ------------


def _laughs(levels: int, width: int = 9) -> str:
    """A spec whose node params hold the billion laughs: each anchor a list of `width`
    aliases of the one before (9 levels of 9: 387,420,489 strings once expanded)."""
    lines = [f"      l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return (
        "version: 1\npipeline_id: p\nnodes:\n  - id: a\n    kind: python_task\n    outs: [x]\n    "
        "params:\n" + "\n".join(lines) + "\n"
    )


def test_an_alias_bomb_is_one_quick_error_with_its_line() -> None:
    # Before: loading took 0.1 s (aliases are shared objects), then spec_digest expanded
    # them: minutes and 13 GB. Now the composed graph is measured before construction.
    started = time.monotonic()
    (line,) = problems(_laughs(9))
    assert time.monotonic() - started < 1, "an alias bomb must be refused at once"
    # line 11 is l3: the innermost list that already expands past the document's own size
    assert line.startswith("f.yaml:11: <root>: invalid YAML: aliases expand the document to "), line
    assert "a YAML alias bomb?" in line and len(line) < 250, line


def test_a_recursive_alias_is_refused() -> None:
    text = spec(nodes="[{id: a, kind: python_task, outs: [x], params: {loop: &l [1, *l]}}]")
    assert problems(text) == [
        (
            "f.yaml:3: <root>: invalid YAML: an alias refers to the collection it is in "
            "(a recursive value cannot be a spec field) at column 62"
        )
    ]


def test_anchors_a_compiler_shares_still_load() -> None:
    # 2,000 nodes sharing the first node's resources and params through aliases: about
    # half of the expanded document comes from aliases, far below the bound.
    first = (
        "  - {id: n0, kind: python_task, outs: [o0], resources: &r {cpu: '1', mem: 1Gi}, params: "
        "&p {entrypoint: 'quantos_assets.tasks.noop:one_row', symbols: [a, b, c, d, e, f, g, h]}}"
    )
    rest = [
        f"  - {{id: n{i}, kind: python_task, outs: [o{i}], resources: *r, params: *p}}"
        for i in range(1, 2000)
    ]
    loaded = load_spec_text(
        "version: 1\npipeline_id: p\nnodes:\n" + "\n".join([first, *rest]) + "\n", "f.yaml", "yaml"
    )
    assert len(loaded.spec.nodes) == 2000 and loaded.spec.nodes[-1].params["symbols"][-1] == "h"


@pytest.mark.parametrize("levels", [2, 3])
def test_a_few_levels_of_aliases_are_within_the_bound(levels: int) -> None:
    text = _laughs(levels)
    assert load_spec_text(text, "f.yaml", "yaml").spec.nodes[0].params[f"l{levels - 1}"]


def test_runtime_params_and_the_promotion_policy_bound_aliases_too(tmp_path: Path) -> None:
    from quantos_assets.gates.policy import PromotionPolicy
    from quantos_assets.spec.loader import load_document, load_runtime_params

    laughs = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
    params = tmp_path / "params.yaml"
    params.write_text(
        "submission_id: s1\nlabels:\n  l0: &l0 [a, a, a, a, a, a, a, a, a]\n" + laughs
    )
    policy = tmp_path / "promotion.yaml"
    policy.write_text("require:\n  l0: &l0 [a, a, a, a, a, a, a, a, a]\n" + laughs)
    # the line is that of l3, the innermost list expanding past the document's own size
    for load, at in (
        (lambda: load_runtime_params(params), f"{params}:6"),
        (lambda: load_document(policy, PromotionPolicy), f"{policy}:5"),
    ):
        started = time.monotonic()
        with pytest.raises(SpecError) as caught:
            load()
        assert time.monotonic() - started < 1
        (line,) = caught.value.lines
        assert line.startswith(f"{at}: <root>: invalid YAML: aliases expand the document to "), line
