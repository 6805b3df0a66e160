"""`quantos registry workspace --helm` (tenancy/workspace_file.py `helm_values`): one
user-code deployment per code location, each a copy of the first; every other line of the
values file, its comments included, as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quantos_assets.apps.cli.main import EXIT_INVALID, main
from quantos_assets.tenancy.locations import LocationPlan
from quantos_assets.tenancy.teams import TeamsFile
from quantos_assets.tenancy.workspace_file import HelmValuesError, helm_deployments, helm_values

PLAN = LocationPlan.of(TeamsFile.model_validate({"teams": {"alpha": {}, "beta": {"shards": 2}}}))
NAMES = ["quantos-platform", "team-alpha", "team-beta-1", "team-beta-2", "quantos-shared"]

VALUES = """\
# the chart's values
global: {serviceAccountName: runs}   # a comment

dagster-user-deployments:
  enabled: true
  # before the list
  deployments:
    # the user code
    - name: quantos
      image: {repository: img, tag: "1.0"}
      dagsterApiGrpcArgs: ["-m", "definitions.definitions"]
      env:
        # why this variable
        - {name: QUANTOS_ENV, value: prod}  # inline
      securityContext:
        runAsNonRoot: true
  # after the list

runLauncher: {type: K8sRunLauncher}
"""


def _deployments(text: str) -> list[dict]:
    return yaml.safe_load(text)["dagster-user-deployments"]["deployments"]


def test_one_deployment_per_location_and_every_other_line_kept() -> None:
    out = helm_values(VALUES, PLAN)
    deployments = _deployments(out)
    assert [d["name"] for d in deployments] == NAMES
    template = _deployments(VALUES)[0]
    assert deployments == helm_deployments(PLAN, template)
    assert deployments[3]["dagsterApiGrpcArgs"] == [
        "-m",
        "definitions.locations",
        "-a",
        "team-beta-2",
    ]
    before = VALUES.partition("    # the user code\n")[0]
    assert out.startswith(before + "    # the user code\n    - name: quantos-platform\n")
    assert out.endswith("  # after the list\n\nrunLauncher: {type: K8sRunLauncher}\n")
    # the first keeps its comments; the copies keep inline ones only
    assert out.count("# why this variable") == 1
    assert out.count("# inline") == len(NAMES)
    assert helm_values(out, PLAN) == out  # regenerating changes nothing


def test_a_block_style_args_list_and_a_compact_list_are_rewritten() -> None:
    text = (
        "dagster-user-deployments:\n"
        "  deployments:\n"
        "  - name: quantos\n"
        "    dagsterApiGrpcArgs:\n"
        "    - -m\n"
        "    - definitions.definitions\n"
        "    port: 3030\n"
        "other: 1\n"
    )
    out = helm_values(text, PLAN)
    assert [d["name"] for d in _deployments(out)] == NAMES
    assert all(d["port"] == 3030 for d in _deployments(out))
    assert yaml.safe_load(out)["other"] == 1
    assert helm_values(out, PLAN) == out


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("global: {}\n", "dagster-user-deployments.deployments[0]: no deployment to copy"),
        (
            "dagster-user-deployments: {deployments: []}\n",
            "dagster-user-deployments.deployments[0]: no deployment to copy (IndexError",
        ),
        (
            "dagster-user-deployments:\n  deployments: [{name: q}]\n",
            "dagster-user-deployments.deployments: not a block list",
        ),
        (
            (
                "dagster-user-deployments:\n  deployments:\n    - image: x\n      name: q\n"
                "      args: {dagsterApiGrpcArgs: 1}\n"
            ),
            "cannot rewrite them in place",
        ),
        ("a: [\n", "no deployment to copy (ParserError"),
    ],
)
def test_values_it_cannot_rewrite_are_one_line_errors(text: str, problem: str) -> None:
    with pytest.raises(HelmValuesError) as err:
        helm_values(text, PLAN)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_the_cli_writes_the_values_or_says_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    teams = tmp_path / "teams.yaml"
    teams.write_text("teams:\n  alpha: {}\n  beta: {shards: 2}\n")
    monkeypatch.setenv("QUANTOS_TEAMS", str(teams))
    values = tmp_path / "values.yaml"
    values.write_text(VALUES)
    assert main(["registry", "workspace", "--helm", str(values), "--write", str(values)]) == 0
    assert values.read_text() == helm_values(VALUES, PLAN)
    bad = tmp_path / "bad.yaml"
    bad.write_text("global: {}\n")
    assert main(["registry", "workspace", "--helm", str(bad)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert err.startswith(f"quantos: error: {bad}: dagster-user-deployments.deployments[0]")
    assert err.count("\n") == 1
