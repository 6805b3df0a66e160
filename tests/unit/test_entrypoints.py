"""The python_task entrypoint allow-list (deploy/teams.yaml `entrypoints`) as a pure check."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantos_assets.kinds.entrypoints import (
    entrypoint_refusals,
    module_allowed,
    pipeline_entrypoint_refusals,
)
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from quantos_assets.tenancy.teams import TeamsFileError, load_teams

REPO = Path(__file__).resolve().parents[2]


def _spec(*entrypoints: str, team: str | None = None) -> DagSpec:
    nodes = [
        Node(id=f"n{i}", kind=NodeKind.python_task, params={"entrypoint": e}, outs=[f"o{i}"])
        for i, e in enumerate(entrypoints)
    ]
    nodes.append(Node(id="sql", kind=NodeKind.trino_sql, params={"sql": "SELECT 1"}, outs=["s"]))
    return DagSpec.model_construct(
        version=1, pipeline_id="p", nodes=nodes, labels={"team": team} if team else {}
    )


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("quantos_assets.tasks", True),
        ("quantos_assets.tasks.noop", True),
        ("quantos_assets.tasks.a.b", True),
        ("quantos_assets.tasksx", False),
        ("quantos_assets.tasksx.noop", False),
        ("quantos_assets", False),
        ("quantos_assets.kinds.pipes_entry", False),
        ("subprocess", False),
    ],
)
def test_prefixes_match_whole_dotted_components(module: str, allowed: bool) -> None:
    assert module_allowed(module, ["quantos_assets.tasks"]) is allowed


def test_one_line_per_offending_node_naming_the_field() -> None:
    spec = _spec(
        "quantos_assets.tasks.noop:one_row", "subprocess:getoutput", "os:system", "no colon"
    )
    tail = (
        "is not allowed: team research may run entrypoints under: quantos_assets.tasks "
        "(deploy/teams.yaml entrypoints)"
    )
    assert entrypoint_refusals(spec, ["quantos_assets.tasks"], "research") == [
        f"nodes[1].params.entrypoint: 'subprocess:getoutput' {tail}",
        f"nodes[2].params.entrypoint: 'os:system' {tail}",
        "nodes[3].params.entrypoint: 'no colon' is not of the form 'package.module:function'",
    ]
    assert (
        entrypoint_refusals(_spec("quantos_assets.tasks.noop:one_row"), ["quantos_assets.tasks"])
        == []
    )


def test_the_pipelines_team_decides_and_a_pipeline_without_one_gets_the_defaults(
    tmp_path: Path,
) -> None:
    path = tmp_path / "teams.yaml"
    path.write_text(
        "defaults: {entrypoints: [quantos_assets.tasks]}\n"
        "teams:\n  quant: {entrypoints: [quantos_assets.tasks, quant_lib.tasks]}\n  other: {}\n"
    )
    teams = load_teams(path)
    assert (
        pipeline_entrypoint_refusals(_spec("quant_lib.tasks.alpha:run", team="quant"), teams) == []
    )
    assert pipeline_entrypoint_refusals(_spec("quant_lib.tasks.alpha:run"), teams) == [
        (
            "nodes[0].params.entrypoint: 'quant_lib.tasks.alpha:run' is not allowed: pipelines "
            "without labels.team (defaults) may run entrypoints under: quantos_assets.tasks "
            "(deploy/teams.yaml entrypoints)"
        )
    ]
    # a team entry without the field gets quantos_assets.tasks, like an unknown team gets the
    # defaults
    assert teams.entrypoints_for("other") == ["quantos_assets.tasks"]
    assert teams.entrypoints_for("nobody") == ["quantos_assets.tasks"]


def test_the_shipped_teams_file_allows_only_the_platforms_tasks() -> None:
    teams = load_teams(REPO / "deploy" / "teams.yaml")
    assert {tuple(teams.entrypoints_for(t)) for t in [None, *teams.teams]} == {
        ("quantos_assets.tasks",)
    }


def test_a_prefix_that_is_no_module_path_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "teams.yaml"
    path.write_text("teams:\n  quant: {entrypoints: ['quant_lib/tasks']}\n")
    with pytest.raises(TeamsFileError) as err:
        load_teams(path)
    assert str(err.value) == (
        f"{path}: teams.quant.entrypoints: Value error, 'quant_lib/tasks' is not a dotted module "
        "path (e.g. quantos_assets.tasks)"
    )
