"""Where each registered pipeline is served (quantos_assets/registry_locations.py), and the
committed workspace.yaml is the one the teams file makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from quantos_assets.apps.cli.main import main
from quantos_assets.registry_locations import RegistryLocations
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec_registry import register_spec
from quantos_assets.spec_rules.firm import load_spec_text
from quantos_assets.tenancy.locations import PLATFORM_LOCATION, SHARED_LOCATION, LocationPlan
from quantos_assets.tenancy.teams import TeamsFile, load_teams
from quantos_assets.tenancy.workspace_file import workspace_yaml
from resources.profile import REPO_ROOT

TEAMS = TeamsFile.model_validate({"teams": {"research": {}, "execution": {"shards": 2}}})


def spec_text(pipeline_id: str, team: str | None = None, out: str | None = None) -> str:
    spec: dict[str, object] = {
        "version": 1,
        "pipeline_id": pipeline_id,
        "nodes": [
            {
                "id": "rows",
                "kind": "python_task",
                "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
                "outs": [out or f"{pipeline_id}_rows"],
            }
        ],
    }
    if team is not None:
        spec["labels"] = {"team": team}
    return yaml.safe_dump(spec)


def loaded(pipeline_id: str, team: str | None = None) -> LoadedSpec:
    return load_spec_text(spec_text(pipeline_id, team), f"{pipeline_id}.yaml", "yaml")


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """A registry: labelled specs, one registered by a team without a label, one of no team
    in the file, one with no team at all."""
    d = tmp_path / "specs"
    d.mkdir()
    (d / "labelled.yaml").write_text(spec_text("labelled", "research"))
    register_spec(d, loaded("indexed"), team="research")  # no label: the registering team's
    for i in range(6):
        (d / f"exec_{i}.yaml").write_text(spec_text(f"exec_{i}", "execution"))
    (d / "marketing.yaml").write_text(spec_text("marketing_daily", "marketing"))
    (d / "nobody.yaml").write_text(spec_text("nobody"))
    return d


def test_a_pipeline_is_served_by_its_teams_location(specs: Path) -> None:
    place = RegistryLocations.read(specs, TEAMS)
    assert place.location_of("labelled") == "team-research"
    assert place.location_of("indexed") == "team-research"  # the index's first team
    assert place.location_of("marketing_daily") == SHARED_LOCATION  # no such team in the file
    assert place.location_of("nobody") == SHARED_LOCATION
    assert place.location_of("no_such") is None
    plan = LocationPlan.of(TEAMS)
    for i in range(6):
        assert place.location_of(f"exec_{i}") == plan.location_of(f"exec_{i}", "execution")
    # refs as a Kafka message gives them: file name, stem, pipeline_id
    assert place.location_of_ref("marketing.yaml") == SHARED_LOCATION
    assert place.location_of_ref("marketing") == SHARED_LOCATION
    assert place.location_of_ref("indexed.json") == "team-research"
    assert place.location_of_ref("nope") is None


def test_counts_list_every_location_and_add_up(specs: Path) -> None:
    place = RegistryLocations.read(specs, TEAMS)
    counts = place.counts()
    assert list(counts) == LocationPlan.of(TEAMS).names()
    assert counts[PLATFORM_LOCATION] == 0
    assert counts["team-research"] == 2
    assert counts["team-execution-1"] + counts["team-execution-2"] == 6
    assert counts[SHARED_LOCATION] == 2
    assert sum(counts.values()) == 10
    assert sorted(place.pipelines_in("team-research")) == ["indexed", "labelled"]
    assert place.pipelines_in(PLATFORM_LOCATION) == []


def test_an_invalid_file_is_reported_by_its_pipelines_location_else_the_platforms(
    specs: Path,
) -> None:
    """A registered pipeline whose new version broke fails in its team's location only; a
    file of no registered pipeline says nothing about any team: the platform reports it."""
    (specs / "indexed.json").write_text(json.dumps({"version": 1, "pipeline_id": "indexed"}))
    (specs / "junk.yaml").write_text("version: 1\npipeline_id: junk\nnodes: [{id: x, kind: no}]\n")
    place = RegistryLocations.read(specs, TEAMS)
    assert list(place.invalid_in("team-research")) == [specs / "indexed.json"]
    assert list(place.invalid_in(PLATFORM_LOCATION)) == [specs / "junk.yaml"]
    assert place.invalid_in(SHARED_LOCATION) == {}
    assert place.invalid_in("team-execution-1") == {}
    assert place.location_of("indexed") is None  # no valid version to serve
    assert all(place.invalid_in("team-research")[specs / "indexed.json"])  # its error lines


def test_the_answer_is_reused_until_the_registry_changes(specs: Path) -> None:
    first = RegistryLocations.read(specs, TEAMS)
    assert RegistryLocations.read(specs, TEAMS) is first
    (specs / "late.yaml").write_text(spec_text("late", "research"))
    again = RegistryLocations.read(specs, TEAMS)
    assert again is not first and again.location_of("late") == "team-research"
    other_plan = TeamsFile.model_validate({"teams": {"research": {"shards": 2}}})
    assert RegistryLocations.read(specs, other_plan) is not again


def test_the_committed_workspace_is_the_one_the_teams_file_makes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """workspace.yaml is generated: after a change to deploy/teams.yaml, regenerate it with
    `quantos registry workspace --write workspace.yaml`."""
    teams_file = REPO_ROOT / "deploy" / "teams.yaml"
    committed = (REPO_ROOT / "workspace.yaml").read_text()
    assert committed == workspace_yaml(LocationPlan.of(load_teams(teams_file)))
    monkeypatch.setenv("QUANTOS_TEAMS", str(teams_file))
    assert main(["registry", "workspace"]) == 0
    assert capsys.readouterr().out == committed
