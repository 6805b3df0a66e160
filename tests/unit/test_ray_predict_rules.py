"""`quantos validate` on a ray_job's mode: an unknown mode, or a predict node that cannot
have a model and a table to read, is one line with its file and line, before any run."""

from __future__ import annotations

import pytest

from quantos_assets.kinds.registry import input_metadata
from quantos_assets.spec.loader import SpecError
from quantos_assets.spec_rules.firm import load_spec_text
from resources.table_ref import LOAD_AS, LOAD_AS_REFERENCE

SPEC = """\
version: 1
pipeline_id: rt_predict
nodes:
  - id: features
    kind: python_task
    params: {entrypoint: "quantos_assets.tasks.features:compute"}
    outs: [features]
  - id: train
    kind: ray_job
    params: {trainer: bilstm, mode: train}
    ins: [features]
    outs: [model, metrics]
  - id: predict
    kind: ray_job
    params:
      mode: predict
      symbol_column: symbol
    ins: [model, features]
    outs: [predictions]
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "p.yaml", "yaml")
    return [str(p) for p in caught.value.problems]


def _line(text: str, fragment: str, after: str = "id: predict") -> int:
    start = text.index(after)
    return text.count("\n", 0, text.index(fragment, start)) + 1


def test_a_predict_node_loads_and_reads_its_table_by_reference() -> None:
    spec = load_spec_text(SPEC, "p.yaml", "yaml").spec
    assert input_metadata(spec.node("predict")) == {LOAD_AS: LOAD_AS_REFERENCE}


def test_an_unknown_mode_is_one_line_with_its_line() -> None:
    text = SPEC.replace("mode: predict", "mode: score")
    assert _errors(text) == [
        (
            f"p.yaml:{_line(text, 'mode: score')}: nodes[2].params.mode: mode must be train or "
            "predict, not 'score'"
        )
    ]


def test_a_training_param_on_predict_is_one_line_with_its_line() -> None:
    text = SPEC.replace(
        "      symbol_column: symbol\n", "      symbol_column: symbol\n      trainer: bilstm\n"
    )
    assert _errors(text) == [
        (
            f"p.yaml:{_line(text, 'trainer: bilstm')}: nodes[2].params.trainer: a predict ray_job "
            "takes params date_column, mode, symbol_column, workers (the model decides trainer "
            "and features), not 'trainer'"
        )
    ]


def test_predict_needs_a_trained_model_and_one_table() -> None:
    text = SPEC.replace("ins: [model, features]", "ins: [metrics, features]")
    assert _errors(text) == [
        (
            f"p.yaml:{_line(text, 'ins: [metrics')}: nodes[2].ins: a predict ray_job takes two "
            "ins, a model (outs[0] of a training ray_job) and a feature table, not ['metrics', "
            "'features'] (0 model(s))"
        )
    ]


def test_predict_writes_one_table() -> None:
    text = SPEC.replace("outs: [predictions]", "outs: [predictions, report]")
    assert _errors(text) == [
        (
            f"p.yaml:{_line(text, 'outs: [predictions')}: nodes[2].outs: a predict ray_job writes "
            "one predictions "
            "table: one out, not 2"
        )
    ]


def test_a_gate_on_predictions_is_one_line() -> None:
    text = SPEC + "gates:\n  model: predictions\n  metrics: metrics\n  stages: [staging]\n"
    assert _errors(text) == [
        (
            f"p.yaml:{_line(text, 'model: predictions', 'gates:')}: gates.model: 'predictions' is "
            "the predictions "
            "table of predict node 'predict', not a model"
        )
    ]
