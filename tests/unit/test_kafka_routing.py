"""Kafka submissions with a code location per team (sensors/kafka_submissions.py `Routing`):
every location reads the whole topic, and exactly one of them handles each message: the
location the registry places its pipeline in runs it (or refuses it); a message naming no
registered pipeline, or none at all, is the platform location's to dead-letter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from profiles import LOCAL
from team_specs import team_spec as spec

from quantos_assets.admission.registry_view import DirectoryRegistry
from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.registry_locations import RegistryLocations
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.tenancy.locations import PLATFORM_LOCATION, SHARED_LOCATION
from quantos_assets.tenancy.teams import TeamsFile
from resources.kafka_client import Message
from sensors.kafka_submissions import (
    Accepted,
    Elsewhere,
    Rejected,
    Routing,
    parse_submission,
    pipeline_refs,
)

TEAMS = TeamsFile.model_validate({"teams": {"alpha": {}, "beta": {}}})
TOPIC = "orch.jobs"


@dataclass
class Registry:
    specs: Path
    # each location's pipelines as it loaded them (beta_new: registered since beta loaded)
    loaded: dict[str, list[PipelineDefs]]

    def routing(self, location: str) -> Routing:
        return Routing(
            location, lambda ref: RegistryLocations.read(self.specs, TEAMS).location_of_ref(ref)
        )

    def parse(self, location: str, value: Any, offset: int = 0) -> Any:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        refs = pipeline_refs(self.loaded.get(location, []))
        return parse_submission(
            Message(TOPIC, 0, offset, raw),
            refs,
            TEAMS,
            registry=DirectoryRegistry(self.specs),
            routing=self.routing(location),
        )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    specs = tmp_path / "specs"
    specs.mkdir()
    built: dict[str, PipelineDefs] = {}
    for pid, team in [("alpha_daily", "alpha"), ("beta_daily", "beta"), ("nobody", None)]:
        path = specs / f"{pid}.yaml"
        path.write_text(yaml.safe_dump(spec(pid, team)))
        built[pid] = build_pipeline(load_spec(path), LOCAL)
    (specs / "beta_new.yaml").write_text(yaml.safe_dump(spec("beta_new", "beta")))
    return Registry(
        specs,
        {
            "team-alpha": [built["alpha_daily"]],
            "team-beta": [built["beta_daily"]],
            SHARED_LOCATION: [built["nobody"]],
        },
    )


LOCATIONS = [PLATFORM_LOCATION, "team-alpha", "team-beta", SHARED_LOCATION]


def params(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"submission_id": f"sub-{n:03d}", **extra}


def test_another_locations_pipeline_is_elsewhere_and_its_own_runs(registry: Registry) -> None:
    message = {"spec_ref": "alpha_daily", "runtime_params": params()}
    assert isinstance(registry.parse("team-beta", message), Elsewhere)
    assert isinstance(registry.parse(SHARED_LOCATION, message), Elsewhere)
    assert isinstance(registry.parse(PLATFORM_LOCATION, message), Elsewhere)
    accepted = registry.parse("team-alpha", message)
    assert isinstance(accepted, Accepted) and accepted.pipeline_id == "alpha_daily"
    # by file name and inline spec alike
    by_file = {"spec_ref": "alpha_daily.yaml", "runtime_params": params()}
    assert isinstance(registry.parse("team-beta", by_file), Elsewhere)
    assert isinstance(registry.parse("team-alpha", by_file), Accepted)
    inline = {"dag_spec": spec("alpha_daily", "alpha"), "runtime_params": params()}
    assert isinstance(registry.parse("team-beta", inline), Elsewhere)
    assert isinstance(registry.parse("team-alpha", inline), Accepted)


def test_an_unknown_pipeline_is_dead_lettered_by_the_platform_only(registry: Registry) -> None:
    message = {"spec_ref": "no_such_pipeline", "runtime_params": params()}
    for location in ["team-alpha", "team-beta", SHARED_LOCATION]:
        assert isinstance(registry.parse(location, message), Elsewhere), location
    rejected = registry.parse(PLATFORM_LOCATION, message)
    assert isinstance(rejected, Rejected)
    assert rejected.error == f"{TOPIC}/0/0: spec_ref: unknown pipeline 'no_such_pipeline'"
    inline = {"dag_spec": spec("no_such_pipeline", "alpha"), "runtime_params": params()}
    assert isinstance(registry.parse("team-alpha", inline), Elsewhere)
    assert "unknown pipeline 'no_such_pipeline'" in registry.parse(PLATFORM_LOCATION, inline).error


def test_a_pipeline_placed_here_but_not_loaded_yet_is_refused_with_a_reload_hint(
    registry: Registry,
) -> None:
    """Not skipped: no other location would ever handle it."""
    message = {"spec_ref": "beta_new", "runtime_params": params()}
    rejected = registry.parse("team-beta", message)
    assert isinstance(rejected, Rejected)
    assert rejected.error == (
        f"{TOPIC}/0/0: spec_ref: pipeline 'beta_new' is registered for code location "
        "team-beta but not loaded there (reload the code location)"
    )
    inline = {"dag_spec": spec("beta_new", "beta"), "runtime_params": params()}
    rejected = registry.parse("team-beta", inline)
    assert isinstance(rejected, Rejected) and "reload the code location" in rejected.error
    for location in ["team-alpha", PLATFORM_LOCATION, SHARED_LOCATION]:
        assert isinstance(registry.parse(location, message), Elsewhere), location
        assert isinstance(registry.parse(location, inline), Elsewhere), location


MESSAGES: list[tuple[str, Any, str | None]] = [
    # (what, message, the one location that handles it)
    ("alpha's", {"spec_ref": "alpha_daily", "runtime_params": params()}, "team-alpha"),
    ("beta's", {"spec_ref": "beta_daily", "runtime_params": params()}, "team-beta"),
    ("no team's", {"spec_ref": "nobody", "runtime_params": params()}, SHARED_LOCATION),
    ("unknown", {"spec_ref": "ghost", "runtime_params": params()}, PLATFORM_LOCATION),
    ("not JSON", b"{not json", PLATFORM_LOCATION),
    ("no spec", {"runtime_params": params()}, PLATFORM_LOCATION),
    (
        "both specs",
        {"spec_ref": "x", "dag_spec": {}, "runtime_params": params()},
        PLATFORM_LOCATION,
    ),
    (
        "inline without id",
        {"dag_spec": {"version": 1}, "runtime_params": params()},
        PLATFORM_LOCATION,
    ),
    (
        "alpha's with bad params",
        {"spec_ref": "alpha_daily", "runtime_params": {"env": "local"}},
        "team-alpha",
    ),
    (
        "alpha's inline, broken",
        {"dag_spec": {**spec("alpha_daily", "alpha"), "nodes": []}, "runtime_params": params()},
        "team-alpha",
    ),
]


@pytest.mark.parametrize(("what", "message", "owner"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_exactly_one_location_handles_each_message(
    registry: Registry, what: str, message: Any, owner: str
) -> None:
    """Every location reads every message: any other answer than Elsewhere from two of them
    is a message run twice, or dead-lettered once per location."""
    handled = {
        location: outcome
        for location in LOCATIONS
        if not isinstance(outcome := registry.parse(location, message), Elsewhere)
    }
    assert list(handled) == [owner], what
    if owner == PLATFORM_LOCATION or "bad" in what or "broken" in what:
        assert isinstance(handled[owner], Rejected), what
    else:
        assert isinstance(handled[owner], Accepted), what


def test_without_routing_a_single_location_handles_everything(registry: Registry) -> None:
    """The one-location workspace: no Elsewhere, unknown pipelines rejected there."""
    refs = pipeline_refs([p for ps in registry.loaded.values() for p in ps])
    for n, (value, kind) in enumerate(
        [
            ({"spec_ref": "alpha_daily", "runtime_params": params()}, Accepted),
            ({"spec_ref": "beta_daily", "runtime_params": params()}, Accepted),
            ({"spec_ref": "ghost", "runtime_params": params()}, Rejected),
            (b"{not json", Rejected),
        ]
    ):
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        outcome = parse_submission(Message(TOPIC, 0, n, raw), refs, TEAMS)
        assert isinstance(outcome, kind), value
