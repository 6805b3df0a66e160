"""Attacks on the code location per team (issue 20): a team's pipelines must never be served,
run or fired by another team's location, and no team name (nor spec label) may break the
workspace or take another location's name.

Found and fixed here:
- a teams-file name ending in a newline (`"research\\n"`) passed the DNS-1123 check (`$`
  matches before a final newline) and became location `team-research\\n`: no Kubernetes name,
  and beside team research;
- a Kafka spec_ref that is one team's pipeline_id and another team's file stem (the repo's
  own registry names files unlike their pipelines) was run by both locations: each resolved
  it against its own refs only. The registry now routes every message first;
- a message naming no pipeline (not JSON, no spec) was dead-lettered once per location;
- a location's new consumer group read the topic from its start: deploying the split, adding
  a team or raising a team's shards ran again every retained submission (tested on a broker
  in tests/integration/test_kafka_location_groups.py);
- likewise a location's new gateway-jobs sensor (no cursor) fired again each job's latest
  firing, every one-off job ever scheduled included: Dagster's run-key check is per sensor,
  and a sensor is keyed by its location (tests/unit/test_gateway_jobs_locations.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from profiles import LOCAL
from team_specs import team_spec as spec

from definitions.assemble import LocationError, build_definitions
from quantos_assets.admission.registry_view import DirectoryRegistry
from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.registry_locations import RegistryLocations
from quantos_assets.spec_registry import RegistryRefusal, register_spec
from quantos_assets.spec_rules.firm import load_spec, load_spec_text
from quantos_assets.tenancy.locations import PLATFORM_LOCATION, SHARED_LOCATION, LocationPlan
from quantos_assets.tenancy.teams import TeamsFile
from quantos_assets.tenancy.workspace_file import workspace_yaml
from resources.kafka_client import Message
from resources.profile import active_profile
from sensors.kafka_submissions import (
    Accepted,
    Deferred,
    Elsewhere,
    Rejected,
    Routing,
    parse_submission,
    pipeline_refs,
)

TEAMS = TeamsFile.model_validate({"teams": {"alpha": {}, "beta": {}}})
K8S_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def loaded(pid: str, team: str | None = None) -> Any:
    return load_spec_text(yaml.safe_dump(spec(pid, team)), f"{pid}.yaml", "yaml")


def plan_of(teams: dict[str, Any]) -> LocationPlan:
    return LocationPlan.of(TeamsFile.model_validate({"teams": teams}))


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "team", ["research\n", "research\r\n", " research", "../x", "x" * 1000, "a:\n- b", "Ω"]
)
def test_no_team_name_makes_an_invalid_or_shared_location_name(team: str) -> None:
    plan = plan_of({team: {"shards": 2}, "research": {}, "x": {}})
    names = plan.names()
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= 63 and re.fullmatch(K8S_NAME, name), repr(name)
    assert plan.team_location(team, 1) not in {"team-research", "team-x", "team-x-1"}
    # the workspace stays one entry per location, whatever the team is called
    entries = yaml.safe_load(workspace_yaml(plan))["load_from"]
    assert [e["python_module"]["location_name"] for e in entries] == names
    assert all(e["python_module"]["attribute"] in names for e in entries)


def test_a_team_cannot_rename_itself_into_another_teams_location(tmp_path: Path) -> None:
    """Renaming team beta to `alpha-2` beside alpha's two shards would hand it alpha's second
    location (its Kafka group and gateway jobs too): every location refuses to load, with
    one line naming the team, rather than serve one of them in the other's."""
    teams = tmp_path / "teams.yaml"
    teams.write_text("teams:\n  alpha: {shards: 2}\n  alpha-2: {}\n")
    specs = tmp_path / "specs"
    specs.mkdir()
    profile = active_profile(
        {
            "QUANTOS_ENV": "local",
            "QUANTOS_DATA_DIR": str(tmp_path / "data"),
            "QUANTOS_SPECS_DIR": str(specs),
            "QUANTOS_TEAMS": str(teams),
        }
    )
    for location in ["team-alpha-2", PLATFORM_LOCATION]:
        with pytest.raises(LocationError) as err:
            build_definitions(profile, specs, location=location)
        line = str(err.value)
        assert "\n" not in line
        assert line == (
            f"code location {location!r}: teams.alpha-2: its code location 'team-alpha-2' is "
            "also team 'alpha''s; rename one of the teams or change its shards"
        )


def test_a_spec_label_never_names_a_location(tmp_path: Path) -> None:
    """Only the teams file makes locations: a label of no listed team, however odd, is
    served by the shared location, and the workspace does not change."""
    specs = tmp_path / "specs"
    specs.mkdir()
    for i, team in enumerate(["../x", "x" * 1000, "alpha\n", "team-alpha", PLATFORM_LOCATION]):
        (specs / f"odd_{i}.yaml").write_text(yaml.safe_dump(spec(f"odd_{i}", team)))
    place = RegistryLocations.read(specs, TEAMS)
    assert place.plan.names() == [PLATFORM_LOCATION, "team-alpha", "team-beta", SHARED_LOCATION]
    assert place.pipelines_in(SHARED_LOCATION) == [f"odd_{i}" for i in range(5)]


# -- the registry --------------------------------------------------------------------------------


def test_a_team_cannot_place_a_spec_in_another_teams_location(tmp_path: Path) -> None:
    """labels.team decides the location, so naming another team in it is refused where a
    spec is registered (spec_registry._owner_refusal; the gateway's PipelineOwner rule asks
    the same), for a new pipeline and for a re-label of one's own."""
    register_spec(tmp_path, loaded("mine"), team="beta")
    for attempt in [loaded("planted", "alpha"), loaded("mine", "alpha")]:
        with pytest.raises(RegistryRefusal) as refused:
            register_spec(tmp_path, attempt, team="beta")
        assert refused.value.code == "not_owner"
    place = RegistryLocations.read(tmp_path, TEAMS)
    assert place.location_of("mine") == "team-beta"
    assert place.location_of("planted") is None
    assert place.pipelines_in("team-alpha") == []
    refusal = DirectoryRegistry(tmp_path).ownership(loaded("planted", "alpha").spec, "beta", False)
    assert refusal is not None and "names team alpha in its labels" in refusal


# -- Kafka ---------------------------------------------------------------------------------------


def _parse(
    specs: Path, location: str, loaded_here: list[PipelineDefs], value: Any
) -> Accepted | Rejected | Deferred | Elsewhere:
    routing = Routing(
        location, lambda ref: RegistryLocations.read(specs, TEAMS).location_of_ref(ref)
    )
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_submission(
        Message("orch.jobs", 0, 0, raw),
        pipeline_refs(loaded_here),
        TEAMS,
        registry=DirectoryRegistry(specs),
        routing=routing,
    )


def test_a_file_named_like_another_teams_pipeline_does_not_run_its_messages(
    tmp_path: Path,
) -> None:
    """Alpha's pipeline xs_momentum_v1 lives in xs_momentum_backtest.yaml (as in specs/);
    beta registers a pipeline with that very id. A message `spec_ref: xs_momentum_backtest`
    names beta's pipeline (a pipeline_id wins over a file name, as in one location): alpha's
    location once resolved it against its own files and ran its own pipeline too."""
    specs = tmp_path / "specs"
    specs.mkdir()
    alpha_file = specs / "xs_momentum_backtest.yaml"
    alpha_file.write_text(yaml.safe_dump(spec("xs_momentum_v1", "alpha")))
    register_spec(specs, loaded("xs_momentum_backtest", "beta"), team="beta")
    alpha = [build_pipeline(load_spec(alpha_file), LOCAL)]
    beta = [build_pipeline(load_spec(specs / "xs_momentum_backtest.json"), LOCAL)]
    message = {"spec_ref": "xs_momentum_backtest", "runtime_params": {"submission_id": "s1"}}

    assert isinstance(_parse(specs, "team-alpha", alpha, message), Elsewhere)
    ran = _parse(specs, "team-beta", beta, message)
    assert isinstance(ran, Accepted) and ran.pipeline_id == "xs_momentum_backtest"
    assert isinstance(_parse(specs, PLATFORM_LOCATION, [], message), Elsewhere)
    # alpha's own pipeline by its id or file name: alpha's only
    for ref in ["xs_momentum_v1", "xs_momentum_backtest.yaml"]:
        own = {"spec_ref": ref, "runtime_params": {"submission_id": "s2"}}
        accepted = _parse(specs, "team-alpha", alpha, own)
        assert isinstance(accepted, Accepted) and accepted.pipeline_id == "xs_momentum_v1"
        assert isinstance(_parse(specs, "team-beta", beta, own), Elsewhere)
    # inline: beta's spec claimed by id goes to beta's location only
    inline = {
        "dag_spec": spec("xs_momentum_backtest", "beta"),
        "runtime_params": {"submission_id": "s3"},
    }
    assert isinstance(_parse(specs, "team-alpha", alpha, inline), Elsewhere)
    assert isinstance(_parse(specs, "team-beta", beta, inline), Accepted)


def test_a_message_for_alphas_pipeline_is_never_run_by_betas_location(tmp_path: Path) -> None:
    """Whatever beta's location has loaded (even alpha's pipeline, from a stale build), the
    registry's placement decides: beta's location never runs alpha's pipeline."""
    specs = tmp_path / "specs"
    specs.mkdir()
    path = specs / "alpha_daily.yaml"
    path.write_text(yaml.safe_dump(spec("alpha_daily", "alpha")))
    stale = [build_pipeline(load_spec(path), LOCAL)]
    for value in [
        {"spec_ref": "alpha_daily", "runtime_params": {"submission_id": "s"}},
        {"spec_ref": "alpha_daily.yaml", "runtime_params": {"submission_id": "s"}},
        {"dag_spec": spec("alpha_daily", "alpha"), "runtime_params": {"submission_id": "s"}},
        {"spec_ref": "alpha_daily", "runtime_params": {"submission_id": "s", "labels": {}}},
    ]:
        assert isinstance(_parse(specs, "team-beta", stale, value), Elsewhere), value
        assert isinstance(_parse(specs, SHARED_LOCATION, stale, value), Elsewhere), value
