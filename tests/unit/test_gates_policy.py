"""Promotion gates before anything runs: bound syntax, judging a measured value, and the
firm-wide policy a spec may tighten but never loosen, each mistake a `FILE:LINE: path:
message` line that also cites the policy's own file and line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quantos_assets.gates.policy import effective_gate, load_policy
from quantos_assets.spec.bounds import BoundSyntaxError, judge, parse_bound
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.trainers.model_card import missing_fields

POLICY = """\
version: 1
stages: [staging, canary, prod]
require:
  sharpe: ">= 0.5"
  max_drawdown: "<= 0.3"
model_card:
  required: [owner, seed]
"""

# Line numbers below refer to this text (the gates block starts on line 14).
SPEC = """\
version: 1
pipeline_id: gated
labels: {{owner: research}}
nodes:
  - id: features
    kind: python_task
    outs: [features]
  - id: train_model
    kind: {kind}
    params: {{trainer: ridge, return_column: fwd_return_1d}}
    ins: [features]
    outs: [model_uri, metrics_json]
gates:
  model: model_uri
  metrics: {metrics}
  require:
    sharpe: "{sharpe}"
    max_drawdown: "<= 0.2"
  stages: {stages}
"""


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "promotion.yaml"
    path.write_text(POLICY)
    monkeypatch.setenv("QUANTOS_PROMOTION_POLICY", str(path))
    return path


def errors(tmp_path: Path, **fields: str) -> list[str]:
    values = {
        "kind": "ray_job",
        "metrics": "metrics_json",
        "sharpe": ">= 1.0",
        "stages": "[staging, canary, prod]",
    }
    path = tmp_path / "gated.yaml"
    path.write_text(SPEC.format(**{**values, **fields}))
    try:
        load_spec(path)
    except SpecError as err:
        return [line.replace(f"{tmp_path}/", "") for line in err.lines]
    return []


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [(">= 1.0", ">=", 1.0), ("<=0.2", "<=", 0.2), (" > -0.5 ", ">", -0.5), ("< 1e-3", "<", 0.001)],
)
def test_bounds_parse(text: str, op: str, value: float) -> None:
    bound = parse_bound("m", text)
    assert (bound.op, bound.value) == (op, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("=> 1.0", "bound '=> 1.0' is not OP NUMBER (OP is >=, >, <= or <), e.g. \">= 1.0\""),
        (">= one", "bound '>= one': 'one' is not a number"),
        (">= nan", "bound '>= nan': the number must be finite"),
        (1.0, 'a bound is a string like ">= 1.0" or "<= 0.2", got 1.0'),
    ],
)
def test_bad_bounds_say_what_is_expected(text: object, message: str) -> None:
    with pytest.raises(BoundSyntaxError) as err:
        parse_bound("m", text)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("spec", "firm", "tighter_or_equal"),
    [
        (">= 1.0", ">= 0.5", True),
        (">= 0.5", ">= 0.5", True),
        ("> 0.5", ">= 0.5", True),
        (">= 0.5", "> 0.5", False),
        (">= 0.3", ">= 0.5", False),
        ("<= 0.2", "<= 0.3", True),
        ("< 0.3", "<= 0.3", True),
        ("<= 0.4", "<= 0.3", False),
        ("<= 5", ">= 0.5", False),
    ],
)
def test_which_bound_is_stricter(spec: str, firm: str, tighter_or_equal: bool) -> None:
    assert parse_bound("m", spec).at_least_as_strict_as(parse_bound("m", firm)) is tighter_or_equal


def test_a_failed_bound_names_the_measured_value_and_the_requirement() -> None:
    sharpe = parse_bound("sharpe", ">= 1.0")
    assert judge(sharpe, {"sharpe": 0.7134}).reason == "sharpe 0.7134 < 1.0 (>= 1.0 required)"
    assert judge(sharpe, {"sharpe": 1.42}).reason == "sharpe 1.42 >= 1.0"
    drawdown = parse_bound("max_drawdown", "<= 0.2")
    assert (
        judge(drawdown, {"max_drawdown": 0.31}).reason
        == "max_drawdown 0.31 > 0.2 (<= 0.2 required)"
    )
    # Rounding never hides which side of the bound the value is on.
    assert judge(sharpe, {"sharpe": 0.99999}).reason == "sharpe 0.99999 < 1.0 (>= 1.0 required)"
    assert not judge(sharpe, {"sharpe": None}).passed
    missing = judge(sharpe, {"ic": 0.05, "hit_rate": 0.52})
    assert (missing.passed, missing.reason) == (
        False,
        "sharpe is not in the metrics (they have hit_rate, ic)",
    )
    assert (
        judge(sharpe, {"sharpe": "high"}).reason
        == "sharpe is 'high', not a number (>= 1.0 required)"
    )


def test_the_spec_tightens_the_policy_and_keeps_the_rest(tmp_path: Path, policy: Path) -> None:
    path = tmp_path / "gated.yaml"
    path.write_text(
        SPEC.format(
            kind="ray_job", metrics="metrics_json", sharpe=">= 1.0", stages="[staging, canary]"
        )
    )
    gates = load_spec(path).spec.gates
    assert gates is not None
    gate = effective_gate(gates, load_policy())
    assert {str(b.bound): b.origin for b in gate.bounds} == {
        "sharpe >= 1.0": "spec",
        "max_drawdown <= 0.2": "spec",
    }
    assert gate.stages == ("staging", "canary") and gate.card_fields == ("owner", "seed")

    path.write_text(
        SPEC.format(kind="ray_job", metrics="metrics_json", sharpe=">= 1.0", stages="null")
    )
    path.write_text(path.read_text().replace('    max_drawdown: "<= 0.2"\n', ""))
    gates = load_spec(path).spec.gates
    assert gates is not None
    gate = effective_gate(gates, load_policy())
    assert {str(b.bound): b.origin for b in gate.bounds} == {
        "sharpe >= 1.0": "spec",
        "max_drawdown <= 0.3": "policy",
    }
    assert gate.stages == ("staging", "canary", "prod")


def test_loosening_is_an_error_citing_both_files(tmp_path: Path, policy: Path) -> None:
    assert errors(tmp_path, sharpe=">= 0.3") == [
        (
            "gated.yaml:17: gates.require.sharpe: '>= 0.3' loosens the firm-wide 'sharpe >= 0.5' "
            "(promotion.yaml:4); "
            "a spec may only tighten it"
        )
    ]
    assert errors(tmp_path, sharpe="<= 5") == [
        (
            "gated.yaml:17: gates.require.sharpe: '<= 5' bounds the other side of the firm-wide "
            "'sharpe >= 0.5' "
            "(promotion.yaml:4); one bound per metric: tighten the firm's instead"
        )
    ]
    assert errors(tmp_path, sharpe="=> 1") == [
        (
            "gated.yaml:17: gates.require.sharpe: bound '=> 1' is not OP NUMBER (OP is >=, >, <= "
            'or <), e.g. ">= 1.0"'
        )
    ]


def test_a_spec_may_stop_early_but_never_skip_a_stage(tmp_path: Path, policy: Path) -> None:
    assert errors(tmp_path, stages="[staging]") == []
    assert errors(tmp_path, stages="[staging, prod]") == [
        (
            "gated.yaml:19: gates.stages: [staging, prod] skips canary: the firm promotes through "
            "staging, canary, "
            "prod in order (promotion.yaml:2); a spec may stop early, never skip or reorder"
        )
    ]
    assert errors(tmp_path, stages="[staging, qa]") == [
        (
            "gated.yaml:19: gates.stages[1]: unknown stage 'qa' (the firm's stages, "
            "promotion.yaml:2: "
            "staging, canary, prod)"
        )
    ]
    assert errors(tmp_path, stages="[staging, staging]") == [
        "gated.yaml:19: gates.stages: stage staging listed twice"
    ]


def test_what_is_gated_must_be_a_trained_model_and_its_metrics(
    tmp_path: Path, policy: Path
) -> None:
    assert errors(tmp_path, kind="python_task") == [
        (
            "gated.yaml:14: gates.model: 'model_uri' is made by python_task node 'train_model'; a "
            "gate retrains the model to prove it reproducible, which needs a ray_job (registered "
            "trainer, recorded seed)"
        )
    ]
    assert errors(tmp_path, metrics="features") == [
        (
            "gated.yaml:15: gates.metrics: 'features' is not the metrics of 'train_model': its "
            "metrics are outs[1] 'metrics_json'"
        )
    ]
    path = tmp_path / "gated.yaml"
    path.write_text(
        SPEC.format(kind="ray_job", metrics="metrics_json", sharpe=">= 1.0", stages="null")
        .replace(", return_column: fwd_return_1d", "")
        .replace('    sharpe: ">= 1.0"\n', '    sortino: ">= 1"\n')
    )
    with pytest.raises(SpecError) as err:
        load_spec(path)
    lines = [line.replace(f"{tmp_path}/", "") for line in err.value.lines]
    assert lines[0] == (
        "gated.yaml:13: gates: the firm's policy requires sharpe (promotion.yaml:4), but "
        "'train_model' reports sharpe "
        "only when it trades its forecast: set params.return_column"
    )
    assert lines[1].startswith(
        "gated.yaml:17: gates.require.sortino: 'train_model' reports no metric 'sortino' (it "
        "reports "
    )


def test_a_broken_policy_is_reported_with_its_own_line(tmp_path: Path, policy: Path) -> None:
    policy.write_text(POLICY.replace('">= 0.5"', '"at least 0.5"'))
    assert errors(tmp_path) == [
        (
            "gated.yaml:13: gates: the firm's promotion policy is invalid: promotion.yaml:4: "
            "require.sharpe: "
            "bound 'at least 0.5' is not OP NUMBER (OP is >=, >, <= or <), e.g. \">= 1.0\""
        )
    ]


def test_the_repository_policy_and_examples_load() -> None:
    loaded = load_policy()
    assert loaded.policy.stages == ["staging", "canary", "prod"]
    assert loaded.source == "deploy/policies/promotion.yaml"
    assert "owner" in loaded.policy.model_card.required


def test_card_fields_that_are_empty_count_as_missing() -> None:
    card = {"owner": "research", "seed": 0, "description": "", "features": []}
    assert missing_fields(card, ["owner", "seed", "description", "features", "environment"]) == [
        "description",
        "features",
        "environment",
    ]
    assert missing_fields(None, ["owner"]) == ["owner"]
