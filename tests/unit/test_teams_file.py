"""deploy/teams.yaml (QUANTOS_TEAMS) as the gateway reads it at start: the shipped file loads,
and a broken one is one line naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantos_assets.tenancy.teams import TeamsFileError, load_teams

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_teams_file_loads() -> None:
    teams = load_teams(REPO / "deploy" / "teams.yaml")
    assert "market-data" in teams.policy("research").secrets_scopes


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (
            'teams:\n  research:\n    max_concurrent_runs: !!int "ten"\n',
            3,
            "cannot read 'ten' as !!int",
        ),
        ('teams:\n  research:\n    secrets_scopes: !!bool "1"\n', 3, "as !!bool"),
        ("teams:\n  research: [a\n", 3, "not YAML"),
        (  # the billion laughs: refused before anything is built (issue 16)
            "x:\n  l0: &l0 [a, a, a, a, a, a, a, a, a]\n"
            + "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
            + "teams: {}\n",
            5,
            "aliases expand the document to",
        ),
    ],
    ids=["int-tag", "bool-tag", "syntax", "alias-bomb"],
)
def test_unreadable_yaml_is_one_line_with_file_and_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    path = tmp_path / "teams.yaml"
    path.write_text(text)
    with pytest.raises(TeamsFileError) as err:
        load_teams(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: not YAML: ") and says in message, message
    assert "\n" not in message
