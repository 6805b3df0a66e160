"""params.search: the declared grammar of a hyperparameter search, checked by `quantos
validate` with the line of the offending entry, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantos_assets.spec.errors import SpecError
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.trainers.registry import TRAINERS
from quantos_assets.trainers.search_space import Distribution, SearchSpaceError, parse_search

SPEC = """\
version: 1
pipeline_id: tune_demo
nodes:
  - id: features
    kind: python_task
    params: {{entrypoint: "quantos_assets.tasks.noop:one_row"}}
    outs: [feature_table]
  - id: train
    kind: ray_job
    params:
      trainer: {trainer}
      search:
{search}
    ins: [feature_table]
    outs: [model]
edges:
  - {{from: features, to: train}}
"""
SEARCH_LINE = 13  # the first line under `search:`


def _errors(tmp_path: Path, search: str, trainer: str = "bilstm") -> list[str]:
    body = "\n".join(f"        {line}" for line in search.splitlines())
    path = tmp_path / "tune_demo.yaml"
    path.write_text(SPEC.format(trainer=trainer, search=body))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return caught.value.lines


def test_a_well_formed_search_loads(tmp_path: Path) -> None:
    body = "\n".join(
        f"        {line}"
        for line in (
            "lr: loguniform(1e-4, 1e-2)",
            "hidden: choice(16, 32)",
            "dropout: [0.0, 0.2]",
            "trials: 4",
        )
    )
    path = tmp_path / "tune_demo.yaml"
    path.write_text(SPEC.format(trainer="bilstm", search=body))
    node = load_spec(path).spec.nodes[1]
    search = parse_search(node.params["search"], TRAINERS["bilstm"].defaults, {})
    assert search.space == {
        "lr": Distribution("loguniform", (1e-4, 1e-2)),
        "hidden": Distribution("choice", (16, 32)),
        "dropout": Distribution("choice", (0.0, 0.2)),
    }
    assert (search.trials, search.metric, search.mode) == (4, "best_val_loss", "min")


@pytest.mark.parametrize(
    ("search", "line", "field", "fragment"),
    [
        ("lr: logunifrom(1e-4, 1e-2)", 0, "lr", "is not a distribution"),
        ("lr: loguniform(0, 1e-2)", 0, "lr", "bounds above 0"),
        ("lr: uniform(0.1, 0.01)", 0, "lr", "first bound below the second"),
        ("lr: loguniform(1e-4)", 0, "lr", "takes two numbers"),
        ("lr: choice(__import__('os'))", 0, "lr", "numbers or quoted strings"),
        ("lr: uniform(0, 1e999)", 0, "lr", "numbers or quoted strings"),
        ("hidden: uniform(16, 64)", 0, "hidden", "whole numbers"),
        ("hidden: choice(16, 32.5)", 0, "hidden", "whole numbers"),
        ("lookback: choice(5, 10)", 0, "lookback", "cannot be searched"),
        ("n_estimators: choice(5, 10)", 0, "n_estimators", "not a hyperparameter of this trainer"),
        ("lr: choice(0.1)\ntrials: 1000", 1, "trials", "from 1 to 64"),
        ("lr: choice(0.1)\nmetric: ic", 1, "metric", "one of best_val_loss"),
        ("lr: choice(0.1)\nmode: maximise", 1, "mode", "one of min, max"),
    ],
)
def test_a_malformed_search_is_one_line_at_its_line(
    tmp_path: Path, search: str, line: int, field: str, fragment: str
) -> None:
    lines = _errors(tmp_path, search)
    assert len(lines) == 1, lines
    where = f"tune_demo.yaml:{SEARCH_LINE + line}: nodes[1].params.search.{field}: "
    assert where in lines[0] and fragment in lines[0], lines[0]


def test_a_searched_name_also_fixed_in_params_is_ambiguous() -> None:
    with pytest.raises(SearchSpaceError, match="both set in params and searched"):
        parse_search({"lr": "choice(0.1, 0.01)"}, TRAINERS["bilstm"].defaults, {"lr": 0.1})


def test_a_scikit_learn_trainer_cannot_be_searched(tmp_path: Path) -> None:
    lines = _errors(tmp_path, "alpha: loguniform(0.1, 10)", trainer="ridge")
    assert (
        len(lines) == 1
        and "nodes[1].params.search: params.search tunes the deep-learning trainers" in lines[0]
    )
