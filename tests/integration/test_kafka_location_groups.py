"""A location per team on a real Kafka-protocol broker: each location's submission sensor
reads the whole topic with a consumer group of its own, and a message becomes one run, in
its pipeline's location; what names no pipeline is dead-lettered once, by the platform's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, SensorDefinition, build_sensor_context
from kafka_broker import MockKafka
from team_specs import TWO_TEAMS, team_spec

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.tenancy.locations import PLATFORM_LOCATION
from resources.profile import Profile, active_profile
from sensors.kafka_submissions import build_kafka_submissions
from sensors.registry import build_platform_sensors, registry_router

pytestmark = pytest.mark.integration

TOPIC = "orch.jobs"
GROUP = "quantos-orchestrator"
TEAMS = TWO_TEAMS


@pytest.fixture
def profile(tmp_path: Path, kafka_broker: MockKafka) -> Profile:
    specs = tmp_path / "specs"
    specs.mkdir()
    for pid, team in [("alpha_daily", "alpha"), ("beta_daily", "beta")]:
        (specs / f"{pid}.yaml").write_text(yaml.safe_dump(team_spec(pid, team)))
    teams = tmp_path / "teams.yaml"
    teams.write_text(TEAMS)
    return active_profile(
        {
            "QUANTOS_ENV": "local",
            "QUANTOS_DATA_DIR": str(tmp_path / "data"),
            "QUANTOS_SPECS_DIR": str(specs),
            "QUANTOS_TEAMS": str(teams),
            "QUANTOS_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "QUANTOS_KAFKA_TIMEOUT_S": "3",
        }
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as made:
        yield made


def test_each_location_reads_the_topic_and_runs_only_its_own(
    kafka_broker: MockKafka, profile: Profile, instance: DagsterInstance
) -> None:
    route = registry_router(profile)
    sensors = {
        f"team-{team}": build_kafka_submissions(
            [build_pipeline(load_spec(profile.specs_dir / f"{team}_daily.yaml"), profile)],
            profile,
            location=f"team-{team}",
            route=route,
        )
        for team in ["alpha", "beta"]
    }
    [sensors[PLATFORM_LOCATION]] = build_platform_sensors(profile)
    params = {"submission_id": "s"}
    kafka_broker.produce(
        TOPIC,
        [
            {"spec_ref": "alpha_daily", "runtime_params": {**params, "submission_id": "a1"}},
            {"spec_ref": "beta_daily", "runtime_params": {**params, "submission_id": "b1"}},
            {"spec_ref": "ghost", "runtime_params": params},
            b"{not json",
            {"spec_ref": "alpha_daily", "runtime_params": {**params, "submission_id": "a2"}},
        ],
    )
    runs: dict[str, list[str]] = {}
    cursors: dict[str, str | None] = {}
    for location, sensor in sensors.items():
        assert sensor is not None
        result = sensor.evaluate_tick(build_sensor_context(cursor=None, instance=instance))
        requests = result.run_requests or []
        runs[location] = sorted(r.tags["quantos/submission_id"] for r in requests)
        assert {r.job_name for r in requests} <= {location.removeprefix("team-") + "_daily"}
        cursors[location] = result.cursor
    assert runs == {"team-alpha": ["a1", "a2"], "team-beta": ["b1"], PLATFORM_LOCATION: []}

    dead = kafka_broker.read_all(f"{TOPIC}.dlq")
    errors = sorted(dict(m.headers())["quantos.error"].decode() for m in dead)
    assert len(errors) == 2, errors  # once each, not once per location
    assert "spec_ref: unknown pipeline 'ghost'" in errors[0] + errors[1]
    assert any("not JSON" in e for e in errors)

    # Each group commits the whole topic on its next tick, Elsewhere messages included.
    for location, sensor in sensors.items():
        assert sensor is not None
        again = sensor.evaluate_tick(
            build_sensor_context(cursor=cursors[location], instance=instance)
        )
        assert not again.run_requests
        assert kafka_broker.committed(TOPIC, f"{GROUP}.{location}") == kafka_broker.end_offsets(
            TOPIC
        ), location
    assert kafka_broker.committed(TOPIC, GROUP) != kafka_broker.end_offsets(TOPIC)  # unused


def _ticked(
    sensor: SensorDefinition | None, instance: DagsterInstance, cursor: str | None
) -> tuple[list[str], str | None]:
    assert sensor is not None
    result = sensor.evaluate_tick(build_sensor_context(cursor=cursor, instance=instance))
    return sorted(r.tags["quantos/submission_id"] for r in result.run_requests or []), result.cursor


def test_a_new_location_starts_where_the_others_are_not_at_the_topics_start(
    kafka_broker: MockKafka, profile: Profile, instance: DagsterInstance
) -> None:
    """A location's group with no committed offset read the topic from its earliest one: the
    split (every group new) and every later team or shard ran again each retained submission
    another location had already run. It now starts at the platform location's offsets, or
    at the single location's group's."""
    kafka_broker.produce(
        TOPIC,
        [
            {"spec_ref": "alpha_daily", "runtime_params": {"submission_id": f"old-{i}"}}
            for i in range(4)
        ],
    )
    # the single location (group GROUP) ran them all before the split
    kafka_broker.commit(TOPIC, GROUP, kafka_broker.end_offsets(TOPIC))
    route = registry_router(profile)

    def location(team: str) -> SensorDefinition | None:
        return build_kafka_submissions(
            [build_pipeline(load_spec(profile.specs_dir / f"{team}_daily.yaml"), profile)],
            profile,
            location=f"team-{team}",
            route=route,
        )

    sensors = {"team-alpha": location("alpha"), "team-beta": location("beta")}
    [sensors[PLATFORM_LOCATION]] = build_platform_sensors(profile)
    cursors: dict[str, str | None] = {}
    for name, sensor in sensors.items():
        replayed, cursors[name] = _ticked(sensor, instance, None)
        assert replayed == [], name  # nothing run twice
        assert kafka_broker.committed(TOPIC, f"{GROUP}.{name}") == kafka_broker.end_offsets(TOPIC)

    kafka_broker.produce(
        TOPIC,
        [
            {"spec_ref": "alpha_daily", "runtime_params": {"submission_id": "new-a"}},
            {"spec_ref": "beta_daily", "runtime_params": {"submission_id": "new-b"}},
        ],
    )
    runs: dict[str, list[str]] = {}
    for name, sensor in sensors.items():
        runs[name], cursors[name] = _ticked(sensor, instance, cursors[name])
    assert runs == {"team-alpha": ["new-a"], "team-beta": ["new-b"], PLATFORM_LOCATION: []}
    for name, sensor in sensors.items():  # commit what the tick handed over
        _ticked(sensor, instance, cursors[name])

    # A team added later: its group starts where the platform location's is.
    (profile.specs_dir / "gamma_daily.yaml").write_text(
        yaml.safe_dump(team_spec("gamma_daily", "gamma"))
    )
    profile.teams_file.write_text(TEAMS + "  gamma: {}\n")
    gamma = location("gamma")
    assert _ticked(gamma, instance, None)[0] == []
    kafka_broker.produce(
        TOPIC, [{"spec_ref": "gamma_daily", "runtime_params": {"submission_id": "new-g"}}]
    )
    assert _ticked(gamma, instance, None)[0] == ["new-g"]
    assert _ticked(sensors["team-alpha"], instance, cursors["team-alpha"])[0] == []


def test_a_teams_submissions_wait_for_its_location_to_be_deployed(
    kafka_broker: MockKafka, profile: Profile, instance: DagsterInstance
) -> None:
    """The teams file and the registry know team gamma before its code server is deployed.
    The platform's sensor reads gamma's submissions meanwhile and moves its own group past
    them; gamma's group, which did not exist, used to start at the platform's offsets once
    deployed, and those submissions never ran. The platform now commits gamma's group at
    its first message, so gamma starts there."""
    route = registry_router(profile)
    [platform] = build_platform_sensors(profile)
    _, cursor = _ticked(platform, instance, None)  # running before gamma exists
    (profile.specs_dir / "gamma_daily.yaml").write_text(
        yaml.safe_dump(team_spec("gamma_daily", "gamma"))
    )
    profile.teams_file.write_text(TEAMS + "  gamma: {}\n")
    kafka_broker.produce(
        TOPIC,
        [
            {"spec_ref": "alpha_daily", "runtime_params": {"submission_id": "a"}},
            {"spec_ref": "gamma_daily", "runtime_params": {"submission_id": "early-g1"}},
            {"spec_ref": "gamma_daily", "runtime_params": {"submission_id": "early-g2"}},
        ],
    )
    for _ in range(2):  # reads them (Elsewhere), then commits past them
        ran, cursor = _ticked(platform, instance, cursor)
        assert ran == []
    ends = {p: o for p, o in kafka_broker.end_offsets(TOPIC).items() if o > 0}
    platform_group = kafka_broker.committed(TOPIC, f"{GROUP}.{PLATFORM_LOCATION}")
    assert {p: platform_group[p] for p in ends} == ends  # past gamma's messages

    gamma = build_kafka_submissions(
        [build_pipeline(load_spec(profile.specs_dir / "gamma_daily.yaml"), profile)],
        profile,
        location="team-gamma",
        route=route,
    )
    ran, cursor = _ticked(gamma, instance, None)  # gamma's code server comes up
    assert ran == ["early-g1", "early-g2"]
    ran, _ = _ticked(gamma, instance, cursor)
    assert ran == []  # once each
    gamma_group = kafka_broker.committed(TOPIC, f"{GROUP}.team-gamma")
    assert {p: gamma_group[p] for p in ends} == ends
