"""Spec loading: the seed example loads, and every kind of mistake gets its own line.

Each error case writes a real file and checks the exact `FILE:LINE: path: message`
line an author would see, so the line numbers are part of the contract.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.graph_rules import check_graph
from quantos_assets.spec.json_schema import runtime_params_json_schema, spec_json_schema
from quantos_assets.spec.loader import LoadedSpec, load_runtime_params, load_runtime_params_text
from quantos_assets.spec.models import DagSpec, NodeKind, Priority, Qos, RuntimeParams
from quantos_assets.spec_rules.firm import load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[2]
SEED_YAML = REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml"
# The JSON twin lives outside specs/: two files with one pipeline_id would clash there.
SEED_JSON = REPO / "tests" / "fixtures" / "seed_bt_xs_bilstm_v1.json"
# Seed 000 §3.2's runtime params, verbatim.
SEED_RUNTIME_PARAMS = json.loads(
    (REPO / "tests" / "fixtures" / "seed_runtime_params.json").read_text()
)

# Line numbers below refer to this text: keep it stable.
BASE = """\
version: 1
pipeline_id: demo
slo:
  max_runtime: "2h"
  retry: {max_attempts: 2, backoff_sec: 60}
nodes:
  - id: a
    kind: python_task
    outs: [x]
  - id: b
    kind: python_task
    ins: [x]
    outs: [y]
edges:
  - {from: a, to: b}
"""
LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def spec_errors(tmp_path: Path, text: str, name: str = "demo.yaml") -> tuple[str, list[str]]:
    """Write `text`, load it, and return (file name as given, error lines)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    err = caught.value
    assert str(err) == "\n".join(err.lines)
    assert "Traceback" not in str(err)
    for line in err.lines:
        assert LINE.match(line), line
    return str(path), err.lines


def has(lines: list[str], file: str, line: int, path: str, fragment: str) -> bool:
    prefix = f"{file}:{line}: {path}: "
    return any(ln.startswith(prefix) and fragment in ln for ln in lines)


def edit(*pairs: tuple[str, str]) -> str:
    text = BASE
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# --- the seed example -------------------------------------------------------


def test_seed_yaml_and_json_load_to_equal_models() -> None:
    from_yaml = load_spec(SEED_YAML)
    from_json = load_spec(SEED_JSON)
    assert isinstance(from_yaml, LoadedSpec)
    assert from_yaml.spec == from_json.spec
    assert from_yaml.path == SEED_YAML
    assert from_yaml.sha256 == hashlib.sha256(SEED_YAML.read_bytes()).hexdigest()
    assert from_json.sha256 == hashlib.sha256(SEED_JSON.read_bytes()).hexdigest()


def test_seed_values_are_the_seed_example() -> None:
    spec = load_spec(SEED_YAML).spec
    assert spec.version == 1 and spec.pipeline_id == "bt_xs_bilstm_v1"
    assert spec.slo.max_runtime == 7200
    assert (spec.slo.retry.max_attempts, spec.slo.retry.backoff_sec) == (2, 60)
    assert (spec.slo.priority, spec.slo.qos) == (Priority.normal, Qos.spot_ok)
    assert (spec.resources.default.cpu, spec.resources.default.mem) == (4, 16 * 2**30)
    assert [n.id for n in spec.nodes] == ["fetch_data", "compute_features", "train_model"]
    assert [n.kind for n in spec.nodes] == [
        NodeKind.trino_sql,
        NodeKind.python_task,
        NodeKind.ray_job,
    ]
    train = spec.node("train_model")
    assert train.params == {"trainer": "bilstm", "epochs": 30}
    assert spec.effective_resources(train).model_dump() == {"cpu": "8", "mem": "32Gi", "gpu": 1}
    assert spec.node("compute_features").env == {"FEATURE_VIEW": "xs_v2"}
    assert train.outs == ["model_uri", "metrics_json"]
    assert [(e.from_, e.to) for e in spec.edges] == [
        ("fetch_data", "compute_features"),
        ("compute_features", "train_model"),
    ]
    assert check_graph(spec) == []


def test_load_spec_text_matches_file_load() -> None:
    text = SEED_JSON.read_text()
    loaded = load_spec_text(text, "inline.json", "json")
    assert loaded.path is None
    assert loaded.spec == load_spec(SEED_YAML).spec
    assert loaded.sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_spec_round_trips_through_its_own_dump() -> None:
    spec = load_spec(SEED_YAML).spec
    dumped = json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert load_spec_text(dumped, "dump.json", "json").spec == spec


# --- file-level errors ------------------------------------------------------


def test_unknown_suffix(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, BASE, "demo.txt")
    assert lines == [f"{file}:1: <root>: unsupported file type '.txt' (use .yaml, .yml or .json)"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert caught.value.lines[0].startswith(f"{tmp_path / 'nope.yaml'}:1: <root>: cannot read file")


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    file, lines = spec_errors(
        tmp_path,
        edit(("    kind: python_task\n    outs: [x]", "    kind: python_task\n     outs: x: y")),
    )
    assert len(lines) == 1 and has(lines, file, 9, "<root>", "invalid YAML")


def test_json_syntax_error_has_its_line(tmp_path: Path) -> None:
    text = '{\n  "version": 1,\n  "pipeline_id": "demo"\n  "nodes": []\n}\n'
    file, lines = spec_errors(tmp_path, text, "demo.json")
    assert lines == [f"{file}:4: <root>: invalid JSON: Expecting ',' delimiter at column 3"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.yaml", ""),
        ("blank.json", "  \n"),
        ("comments.yml", "# only a comment\n"),
    ],
)
def test_empty_file(tmp_path: Path, name: str, text: str) -> None:
    file, lines = spec_errors(tmp_path, text, name)
    assert len(lines) == 1 and has(lines, file, 1, "<root>", "empty file")


@pytest.mark.parametrize(
    ("name", "text", "got"),
    [
        ("list.yaml", "- version: 1\n", "list"),
        ("scalar.json", '"demo"', "string"),
    ],
)
def test_top_level_not_a_mapping(tmp_path: Path, name: str, text: str, got: str) -> None:
    file, lines = spec_errors(tmp_path, text, name)
    assert lines == [f"{file}:1: <root>: top level must be a mapping of fields, got {got}"]


# --- field errors -------------------------------------------------------------


def test_unsupported_version(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("version: 1", "version: 2")))
    assert lines == [
        f"{file}:1: version: unsupported spec version 2 (this orchestrator reads version 1)"
    ]


def test_version_must_be_the_integer_one(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("version: 1", 'version: "1"')))
    assert has(lines, file, 1, "version", "unsupported spec version '1'")


def test_missing_required_fields(tmp_path: Path) -> None:
    file, lines = spec_errors(
        tmp_path, edit(("pipeline_id: demo\n", ""), ("    kind: python_task\n    ins", "    ins"))
    )
    assert has(lines, file, 1, "pipeline_id", "missing required field 'pipeline_id'")
    # The missing key has no line: the node's own line is the nearest parent.
    assert has(lines, file, 9, "nodes[1].kind", "missing required field 'kind'")


@pytest.mark.parametrize(
    ("pairs", "line", "path", "fragment"),
    [
        ((("nodes:", "owner: me\nnodes:"),), 6, "owner", "unknown field 'owner'"),
        (
            (("max_attempts: 2", "max_attemps: 2"),),
            5,
            "slo.retry.max_attemps",
            "unknown field 'max_attemps'; did you mean 'max_attempts'?",
        ),
        (
            (("    outs: [y]", "    outs: [y]\n    foo: 1"),),
            14,
            "nodes[1].foo",
            "unknown field 'foo'",
        ),
        ((("{from: a, to: b}", "{from: a, too: b}"),), 15, "edges[0].too", "unknown field 'too'"),
    ],
)
def test_unknown_field_anywhere(
    tmp_path: Path, pairs: tuple[tuple[str, str], ...], line: int, path: str, fragment: str
) -> None:
    file, lines = spec_errors(tmp_path, edit(*pairs))
    assert has(lines, file, line, path, fragment), lines


def test_unknown_kind(tmp_path: Path) -> None:
    file, lines = spec_errors(
        tmp_path, edit(("kind: python_task\n    ins", "kind: pyhton_task\n    ins"))
    )
    assert lines == [
        (
            f"{file}:11: nodes[1].kind: unknown kind 'pyhton_task' (expected one of python_task, "
            "trino_sql, spark_sql, ray_job, flink_job, materialize_view, custom_crd); "
            "did you mean 'python_task'?"
        )
    ]


@pytest.mark.parametrize(
    ("pairs", "line", "path", "bad"),
    [
        ((("pipeline_id: demo", "pipeline_id: bt-xs"),), 2, "pipeline_id", "bt-xs"),
        ((("id: a", "id: 1a"), ("from: a", "from: 1a")), 7, "nodes[0].id", "1a"),
        ((("outs: [y]", "outs: [y, 'my out']"),), 13, "nodes[1].outs[1]", "my out"),
    ],
)
def test_bad_ids(
    tmp_path: Path, pairs: tuple[tuple[str, str], ...], line: int, path: str, bad: str
) -> None:
    file, lines = spec_errors(tmp_path, edit(*pairs))
    assert has(lines, file, line, path, f"invalid id '{bad}'"), lines


@pytest.mark.parametrize("value", ['"4"', '"500m"', "2", "0.5"])
def test_valid_cpu(value: str) -> None:
    load_spec_text(
        edit(("    outs: [x]", f"    outs: [x]\n    resources: {{cpu: {value}}}")),
        "ok.yaml",
        "yaml",
    )


@pytest.mark.parametrize("value", ['"16Gi"', '"512Mi"', '"1G"', "1048576"])
def test_valid_mem(value: str) -> None:
    load_spec_text(
        edit(("    outs: [x]", f"    outs: [x]\n    resources: {{mem: {value}}}")),
        "ok.yaml",
        "yaml",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cpu", '"4 cores"'),
        ("cpu", "-1"),
        ("cpu", '"16Gi"'),
        ("cpu", "true"),
        ("mem", '"16GB?"'),
        ("mem", "-1"),
        ("mem", '"500m"'),
        ("gpu", "-1"),
        ("gpu", "true"),
        ("gpu", '"1"'),
    ],
)
def test_bad_quantities(tmp_path: Path, field: str, value: str) -> None:
    text = edit(("    outs: [x]", f"    outs: [x]\n    resources:\n      {field}: {value}"))
    file, lines = spec_errors(tmp_path, text)
    assert len(lines) == 1 and has(lines, file, 11, f"nodes[0].resources.{field}", ""), lines


@pytest.mark.parametrize(
    ("value", "seconds"), [('"2h"', 7200), ('"90s"', 90), ('"1h30m"', 5400), ("600", 600)]
)
def test_valid_durations(value: str, seconds: float) -> None:
    spec = load_spec_text(
        edit(('max_runtime: "2h"', f"max_runtime: {value}")), "ok.yaml", "yaml"
    ).spec
    assert spec.slo.max_runtime == seconds


@pytest.mark.parametrize("value", ['"2 hours"', '"2"', '"0s"', "-5", '"1h 30m"'])
def test_bad_durations(tmp_path: Path, value: str) -> None:
    file, lines = spec_errors(tmp_path, edit(('max_runtime: "2h"', f"max_runtime: {value}")))
    assert len(lines) == 1 and has(lines, file, 4, "slo.max_runtime", "duration must"), lines


@pytest.mark.parametrize(
    ("retry", "path"),
    [
        ("{max_attempts: 0, backoff_sec: 60}", "slo.retry.max_attempts"),
        ("{max_attempts: 11, backoff_sec: 60}", "slo.retry.max_attempts"),
        ("{max_attempts: 2, backoff_sec: -1}", "slo.retry.backoff_sec"),
        ("{max_attempts: 2, backoff_sec: 3601}", "slo.retry.backoff_sec"),
        ("{max_attempts: '2', backoff_sec: 60}", "slo.retry.max_attempts"),
    ],
)
def test_retry_bounds(tmp_path: Path, retry: str, path: str) -> None:
    file, lines = spec_errors(tmp_path, edit(("{max_attempts: 2, backoff_sec: 60}", retry)))
    assert len(lines) == 1 and has(lines, file, 5, path, ""), lines


def test_retry_bounds_message_names_the_range(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("max_attempts: 2", "max_attempts: 0")))
    assert lines == [
        f"{file}:5: slo.retry.max_attempts: max_attempts must be between 1 and 10, got 0"
    ]


@pytest.mark.parametrize(
    "retry", ["{max_attempts: 1, backoff_sec: 0}", "{max_attempts: 10, backoff_sec: 3600}"]
)
def test_retry_bounds_are_inclusive(retry: str) -> None:
    load_spec_text(edit(("{max_attempts: 2, backoff_sec: 60}", retry)), "ok.yaml", "yaml")


def test_yaml_duplicate_key_is_not_silently_dropped(tmp_path: Path) -> None:
    file, lines = spec_errors(
        tmp_path,
        edit(
            (
                "    kind: python_task\n    outs: [x]",
                "    kind: python_task\n    kind: trino_sql\n    outs: [x]",
            )
        ),
    )
    assert lines == [
        f"{file}:9: nodes[0].kind: duplicate key 'kind' (also at line 8; only one would be kept)"
    ]


def test_json_validation_errors_have_lines(tmp_path: Path) -> None:
    data = json.loads(SEED_JSON.read_text())
    data["nodes"][2]["resources"]["mem"] = "32GB?"
    text = json.dumps(data, indent=2)
    expected = next(i for i, ln in enumerate(text.splitlines(), 1) if "32GB?" in ln)
    file, lines = spec_errors(tmp_path, text, "seed.json")
    assert len(lines) == 1 and has(lines, file, expected, "nodes[2].resources.mem", "16Gi"), lines


def test_json_duplicate_key_is_not_silently_dropped(tmp_path: Path) -> None:
    text = (
        '{"version": 1,\n "pipeline_id": "demo",\n'
        ' "nodes": [{"id": "a", "kind": "python_task"}],\n "pipeline_id": "demo"}'
    )
    file, lines = spec_errors(tmp_path, text, "dup.json")
    assert lines == [
        (
            f"{file}:4: pipeline_id: duplicate key 'pipeline_id' "
            "(also at line 2; only one would be kept)"
        )
    ]


# --- graph rules --------------------------------------------------------------


def test_duplicate_node_ids(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("id: b", "id: a"), ("to: b", "to: a")))
    assert has(
        lines, file, 10, "nodes[1].id", "duplicate node id 'a' (first defined at nodes[0])"
    ), lines


def test_out_produced_by_two_nodes(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("outs: [y]", "outs: [y, x]")))
    assert lines == [
        (
            f"{file}:13: nodes[1].outs[1]: out 'x' is already produced by node 'a' "
            "(nodes[0].outs[0]); an out must have exactly one producer"
        )
    ]


def test_in_nobody_produces(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("ins: [x]", "ins: [xx]")))
    assert lines == [f"{file}:12: nodes[1].ins[0]: no node produces 'xx' (did you mean 'x'?)"]


def test_edges_naming_unknown_nodes(tmp_path: Path) -> None:
    file, lines = spec_errors(
        tmp_path, edit(("{from: a, to: b}", "{from: a, to: c}\n  - {from: zz, to: b}"))
    )
    assert lines == [
        f"{file}:15: edges[0].to: unknown node 'c'",
        f"{file}:16: edges[1].from: unknown node 'zz'",
    ]


def test_edge_reversing_a_data_dependency(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("{from: a, to: b}", "{from: b, to: a}")))
    assert lines == [
        (
            f"{file}:15: edges[0]: edge b -> a reverses a data dependency: "
            "'b' consumes 'x', which 'a' produces"
        )
    ]


def test_self_edge(tmp_path: Path) -> None:
    file, lines = spec_errors(
        tmp_path, edit(("{from: a, to: b}", "{from: a, to: b}\n  - {from: b, to: b}"))
    )
    assert lines == [f"{file}:16: edges[1]: self-edge: node 'b' cannot depend on itself"]


def test_cycle_names_its_nodes(tmp_path: Path) -> None:
    text = BASE + "  - {from: b, to: c}\n  - {from: c, to: a}\n"
    text = text.replace(
        "    outs: [y]\n",
        "    outs: [y]\n  - {id: c, kind: python_task}\n  - {id: d, kind: python_task, ins: [y]}\n",
    )
    file, lines = spec_errors(tmp_path, text)
    assert lines == [
        (
            f"{file}:7: nodes[0]: cycle of 3 nodes: a -> b -> c -> a "
            "(a -> b via edges[0]; b -> c via edges[1]; c -> a via edges[2])"
        )
    ]


def test_cycle_through_data_dependencies(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("    outs: [x]", "    ins: [y]\n    outs: [x]")))
    assert has(lines, file, 7, "nodes[0]", "cycle of 2 nodes: a -> b -> a"), lines
    assert has(lines, file, 7, "nodes[0]", "b -> a via 'y'"), lines


def test_node_consuming_its_own_out(tmp_path: Path) -> None:
    file, lines = spec_errors(tmp_path, edit(("ins: [x]", "ins: [x, y]")))
    assert lines == [f"{file}:12: nodes[1].ins[1]: node 'b' consumes its own out 'y'"]


# --- all at once ---------------------------------------------------------------


def test_several_errors_are_reported_together_in_file_order(tmp_path: Path) -> None:
    text = edit(
        ("version: 1", "version: 3"),
        ("max_attempts: 2", "max_attempts: 20"),
        ("kind: python_task\n    outs", "kind: pyhton_task\n    outs"),
        ("ins: [x]", "ins: [x, nope]"),
        ("{from: a, to: b}", "{from: b, to: a}\n  - {from: a, to: ghost}"),
    )
    file, lines = spec_errors(tmp_path, text)
    matches = [LINE.match(ln) for ln in lines]
    assert [int(m["line"]) if m else None for m in matches] == [1, 5, 8, 12, 15, 16]
    assert has(lines, file, 1, "version", "unsupported spec version 3")
    assert has(lines, file, 5, "slo.retry.max_attempts", "between 1 and 10")
    assert has(lines, file, 8, "nodes[0].kind", "unknown kind 'pyhton_task'")
    assert has(lines, file, 12, "nodes[1].ins[1]", "no node produces 'nope'")
    assert has(lines, file, 15, "edges[0]", "reverses a data dependency")
    assert has(lines, file, 16, "edges[1].to", "unknown node 'ghost'")


def test_spec_error_is_one_exception_with_lines() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text("version: 1\n", "inline.yaml", "yaml")
    err = caught.value
    assert isinstance(err, Exception) and err.lines == str(err).splitlines()
    assert err.lines == [
        "inline.yaml:1: pipeline_id: missing required field 'pipeline_id'",
        "inline.yaml:1: nodes: missing required field 'nodes'",
    ]


def test_validated_models_enforce_graph_rules_outside_the_loader() -> None:
    data = json.loads(SEED_JSON.read_text())
    data["edges"].append({"from": "train_model", "to": "fetch_data"})
    with pytest.raises(ValidationError, match="cycle of 3 nodes"):
        DagSpec.model_validate(data)


def test_ten_thousand_node_chain_loads() -> None:
    n = 10_000
    nodes = [
        {"id": f"n{i}", "kind": "python_task", "ins": [f"o{i - 1}"] if i else [], "outs": [f"o{i}"]}
        for i in range(n)
    ]
    edges = [{"from": f"n{i - 1}", "to": f"n{i}"} for i in range(1, n)]
    text = json.dumps({"version": 1, "pipeline_id": "chain", "nodes": nodes, "edges": edges})
    spec = load_spec_text(text, "chain.json", "json").spec
    assert len(spec.nodes) == n and spec.node("n9999").ins == ["o9998"]
    closed = text[:-1] + ', "extra": 1}'
    closed = closed.replace('"edges": [', '"edges": [{"from": "n9999", "to": "n0"}, ', 1)
    with pytest.raises(SpecError) as caught:
        load_spec_text(closed, "chain.json", "json")
    assert len(caught.value.lines) == 2
    assert "cycle of 10000 nodes: n0 -> n1 -> " in str(caught.value)


# --- runtime params ------------------------------------------------------------


def test_seed_runtime_params_load_from_mapping_and_file(tmp_path: Path) -> None:
    params = load_runtime_params(SEED_RUNTIME_PARAMS)
    assert isinstance(params, RuntimeParams)
    assert params.priority == Priority.high and params.affinity.compute_pool == "gpu_spot"
    path = tmp_path / "params.json"
    path.write_text(json.dumps(SEED_RUNTIME_PARAMS, indent=2))
    assert load_runtime_params(path) == params
    assert load_runtime_params_text(json.dumps(SEED_RUNTIME_PARAMS), "p.json", "json") == params


def test_runtime_params_errors_have_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("submission_id: sub-1\nenv: stage\nttl_days: 0\nsecret_scope: [a]\n")
    with pytest.raises(SpecError) as caught:
        load_runtime_params(path)
    assert caught.value.lines == [
        (
            f"{path}:2: env: unknown env 'stage' (expected one of local, dev, staging, prod); "
            "did you mean 'staging'?"
        ),
        f"{path}:3: ttl_days: ttl_days must be between 1 and 3650, got 0",
        f"{path}:4: secret_scope: unknown field 'secret_scope'; did you mean 'secrets_scope'?",
    ]
    with pytest.raises(SpecError, match=r"^<runtime params>:1: submission_id: missing required"):
        load_runtime_params({})


# --- JSON Schema -----------------------------------------------------------------


def _objects(node: object) -> list[dict]:
    found: list[dict] = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


def test_json_schema_accepts_the_seed_and_rejects_unknown_fields() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = spec_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    seed = json.loads(SEED_JSON.read_text())
    assert list(validator.iter_errors(seed)) == []
    seed["nodes"][1]["imgae"] = "x"
    assert any("imgae" in e.message for e in validator.iter_errors(seed))
    assert all(obj.get("additionalProperties") is False for obj in _objects(schema))


@pytest.mark.parametrize(("field", "value"), [("cpu", "4 cores"), ("mem", "16GB?"), ("cpu", -1)])
def test_json_schema_rejects_bad_quantities(field: str, value: object) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    seed = json.loads(SEED_JSON.read_text())
    seed["resources"]["default"][field] = value
    assert not jsonschema.Draft202012Validator(spec_json_schema()).is_valid(seed)


def test_runtime_params_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(runtime_params_json_schema())
    assert validator.is_valid(SEED_RUNTIME_PARAMS)
    assert not validator.is_valid({**SEED_RUNTIME_PARAMS, "ttl": 3})


def test_spec_error_accepts_plain_lines() -> None:
    err = SpecError(["x.yaml:1: resources: no pool fits", "x.yaml:2: <root>: other"])
    assert err.lines == ["x.yaml:1: resources: no pool fits", "x.yaml:2: <root>: other"]
    assert str(err) == "x.yaml:1: resources: no pool fits\nx.yaml:2: <root>: other"
