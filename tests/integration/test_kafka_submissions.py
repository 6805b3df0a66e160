"""kafka_submissions against a real Kafka-protocol broker: what a compiler sends becomes runs,
bad messages are dead-lettered, and a broker that is down or a topic that is missing is a
skipped tick that loses nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, build_sensor_context
from kafka_broker import MockKafka
from profiles import LOCAL

from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import Profile, active_profile
from sensors.kafka_submissions import build_kafka_submissions

pytestmark = pytest.mark.integration

SPEC = """\
version: 1
pipeline_id: xs_signal
labels: {team: research}
slo: {retry: {max_attempts: 2, backoff_sec: 0}}
nodes:
  - id: features
    kind: trino_sql
    params: {sql: "select 1 as x"}
    outs: [feature_table]
"""
TOPIC = "orch.jobs"
GROUP = "quantos-orchestrator"


def _params(n: int, **extra: object) -> dict[str, object]:
    return {"submission_id": f"sub-{n:03d}", "labels": {"team": "research"}, **extra}


def _pipelines(tmp_path: Path) -> list[PipelineDefs]:
    path = tmp_path / "specs" / "xs_signal.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPEC)
    return [build_pipeline(load_spec(path), LOCAL)]


_VARIABLES = {
    "group": "QUANTOS_KAFKA_GROUP",
    "submissions_topic": "QUANTOS_SUBMISSIONS_TOPIC",
    "timeout_s": "QUANTOS_KAFKA_TIMEOUT_S",
}
# staging/prod need their stores named; nothing here opens them
_PROD = {
    "QUANTOS_ENV": "prod",
    "QUANTOS_CATALOG_URI": "sqlite:///unused.db",
    "QUANTOS_WAREHOUSE": "s3://unused/warehouse",
    "QUANTOS_ARTIFACTS": "s3://unused/artifacts",
}


def _profile(bootstrap: str, production: bool = False, **kw: Any) -> Profile:
    """The profile of a location with this broker (the suite's teams file, conftest.py)."""
    env = {
        "QUANTOS_KAFKA_BOOTSTRAP": bootstrap,
        "QUANTOS_KAFKA_TIMEOUT_S": "3",
        "QUANTOS_TEAMS": os.environ["QUANTOS_TEAMS"],
        **{_VARIABLES[k]: str(v) for k, v in kw.items()},
    }
    return active_profile({**env, **(_PROD if production else {})})


_INSTANCE: DagsterInstance | None = None


@pytest.fixture(autouse=True)
def _instance(data_dir: Path) -> Iterator[None]:
    """The tick counts each team's runs (quotas) in an instance, and its quota window in the
    gateway's store under the test's own data dir."""
    global _INSTANCE
    with DagsterInstance.ephemeral() as instance:
        _INSTANCE = instance
        yield
    _INSTANCE = None


def _tick(sensor, cursor: str | None):
    return sensor.evaluate_tick(build_sensor_context(cursor=cursor, instance=_INSTANCE))


def test_each_submission_becomes_one_run_and_bad_ones_are_dead_lettered(
    kafka_broker: MockKafka, tmp_path: Path
) -> None:
    pipelines = _pipelines(tmp_path)
    inline = json.loads(json.dumps(pipelines[0].spec.model_dump(mode="json", by_alias=True)))
    kafka_broker.produce(
        TOPIC,
        [
            {"spec_ref": "xs_signal", "runtime_params": _params(1, priority="high")},
            {"dag_spec": inline, "runtime_params": _params(2)},
            {"spec_ref": "xs_signal.yaml", "runtime_params": _params(3)},
            b"{not json",
            {"spec_ref": "no_such_pipeline", "runtime_params": _params(5)},
            {
                "dag_spec": {**inline, "nodes": [{"id": "x", "kind": "bogus"}]},
                "runtime_params": _params(6),
            },
            {"spec_ref": "xs_signal", "runtime_params": {"env": "local"}},
        ],
    )
    sensor = build_kafka_submissions(pipelines, _profile(kafka_broker.bootstrap))

    first = _tick(sensor, None)
    runs = {r.tags["quantos/submission_id"]: r for r in first.run_requests}
    assert sorted(runs) == ["sub-001", "sub-002", "sub-003"]
    assert {r.job_name for r in runs.values()} == {"xs_signal"}
    assert runs["sub-001"].tags["dagster/priority"] == "10"  # runtime priority high
    assert runs["sub-001"].tags["quantos/team"] == "research"
    assert runs["sub-001"].run_key == runs["sub-001"].tags["quantos/kafka_message"]
    assert len({r.run_key for r in first.run_requests}) == 3
    # Handed to Dagster, not yet committed: a crash here re-reads them (same run keys).
    assert all(o < 0 for o in kafka_broker.committed(TOPIC, GROUP).values())

    dead = kafka_broker.read_all(f"{TOPIC}.dlq")
    errors = sorted(dict(m.headers())["quantos.error"].decode() for m in dead)
    assert len(errors) == 4
    assert any("not JSON" in e for e in errors)
    assert any("spec_ref: unknown pipeline 'no_such_pipeline'" in e for e in errors)
    assert any("nodes[0].kind" in e for e in errors)
    assert any("runtime_params" in e and "submission_id" in e for e in errors)
    assert all("\n" not in e and "Traceback" not in e for e in errors)

    second = _tick(sensor, first.cursor)
    assert not second.run_requests
    assert "no new submissions" in (second.skip_message or "")
    assert kafka_broker.committed(TOPIC, GROUP) == kafka_broker.end_offsets(TOPIC)

    kafka_broker.produce(TOPIC, [{"spec_ref": "xs_signal", "runtime_params": _params(8)}])
    third = _tick(sensor, second.cursor)
    assert [r.tags["quantos/submission_id"] for r in third.run_requests] == ["sub-008"]


PROD = {
    "QUANTOS_ENV": "prod",
    "QUANTOS_CATALOG_URI": "postgresql+psycopg2://lake@pg/lake",
    "QUANTOS_WAREHOUSE": "s3://lake/warehouse",
    "QUANTOS_ARTIFACTS": "s3://artifacts",
}


def test_in_production_a_submissions_placement_and_secrets_reach_its_steps(
    kafka_broker: MockKafka, tmp_path: Path
) -> None:
    """k8s_job_executor applies no run tag to step pods: a Kafka submission's affinity and
    secrets_scope travel as the run config the gateway sends, which the prod job accepts."""
    from dagster import validate_run_config

    from definitions.assemble import definitions_for
    from resources.profile import active_profile

    pipelines = _pipelines(tmp_path)
    wanted = _params(
        1, secrets_scope=["market-data"], affinity={"compute_pool": "cpu_spot"}, priority="low"
    )
    kafka_broker.produce(
        TOPIC,
        [
            {"spec_ref": "xs_signal", "runtime_params": wanted},
            {"spec_ref": "xs_signal", "runtime_params": _params(2, secrets_scope=["Market_Data"])},
            {
                "spec_ref": "xs_signal",
                "runtime_params": _params(3, affinity={"compute_pool": "tpu"}),
            },
            # deploy/teams.yaml grants execution-prod to team execution, not to research (the
            # pipeline's team)
            {
                "spec_ref": "xs_signal",
                "runtime_params": _params(4, secrets_scope=["execution-prod"]),
            },
            {
                "spec_ref": "xs_signal",
                "runtime_params": {**_params(5), "labels": {"team": "execution"}},
            },
        ],
    )
    sensor = build_kafka_submissions(pipelines, _profile(kafka_broker.bootstrap, production=True))
    [run] = _tick(sensor, None).run_requests

    step = run.run_config["execution"]["config"]["per_step_k8s_config"]["xs_signal__features"]
    assert step["container_config"]["env_from"] == [
        {"prefix": "QUANTOS_SCOPE__", "secret_ref": {"name": "quantos-scope-market-data"}}
    ]
    assert step["pod_spec_config"]["node_selector"] == {"quantos.io/pool": "cpu-spot"}
    assert step["pod_template_spec_metadata"]["labels"]["quantos.io/submission"] == "sub-001"
    prod_job = definitions_for(pipelines, active_profile(PROD)).resolve_job_def("xs_signal")
    validate_run_config(prod_job, run.run_config)  # k8s_job_executor's own config schema

    errors = {
        dict(m.headers())["quantos.error"].decode().split(": ", 1)[1]
        for m in kafka_broker.read_all(f"{TOPIC}.dlq")
    }
    assert errors == {
        (
            "runtime_params.secrets_scope: secrets_scope 'Market_Data' cannot name a Kubernetes "
            "Secret (lowercase letters, digits and '-' only)"
        ),
        (
            "runtime_params.affinity.compute_pool: compute_pool 'tpu' does not exist (pools: cpu, "
            "cpu_spot, gpu, gpu_spot)"
        ),
        (
            "runtime_params.secrets_scope ['execution-prod'] is not granted to team research "
            "(deploy/teams.yaml)"
        ),
        "runtime_params.labels.team is 'execution', but the request is team research's",
    }

    # Locally the steps run in processes: the same message carries no Kubernetes config.
    local = build_kafka_submissions(pipelines, _profile(kafka_broker.bootstrap, group="local"))
    assert all(r.run_config == {} for r in _tick(local, None).run_requests)


def test_unreachable_broker_and_missing_topic_skip_with_the_cause_and_lose_nothing(
    kafka_broker: MockKafka, tmp_path: Path
) -> None:
    pipelines = _pipelines(tmp_path)
    missing = build_kafka_submissions(
        pipelines, _profile(kafka_broker.bootstrap, submissions_topic="no.such.topic")
    )
    result = _tick(missing, None)
    assert not result.run_requests
    assert "topic 'no.such.topic' does not exist" in result.skip_message

    kafka_broker.produce(
        TOPIC, [{"spec_ref": "xs_signal", "runtime_params": _params(n)} for n in range(4)]
    )
    sensor = build_kafka_submissions(pipelines, _profile(kafka_broker.bootstrap, timeout_s=1.0))
    first = _tick(sensor, None)
    assert len(first.run_requests) == 4

    kafka_broker.pause()  # the broker stops answering between recording and committing
    try:
        down = _tick(sensor, first.cursor)
    finally:
        kafka_broker.resume()
    assert not down.run_requests
    assert (
        "Kafka" in down.skip_message and kafka_broker.bootstrap.split(",")[0] in down.skip_message
    )
    assert down.cursor == first.cursor  # the uncommitted offsets are still owed a commit

    kafka_broker.produce(TOPIC, [{"spec_ref": "xs_signal", "runtime_params": _params(9)}])
    recovered = _tick(sensor, down.cursor)
    assert [r.tags["quantos/submission_id"] for r in recovered.run_requests] == ["sub-009"]
    _tick(sensor, recovered.cursor)
    assert kafka_broker.committed(TOPIC, GROUP) == kafka_broker.end_offsets(TOPIC)

    nowhere = build_kafka_submissions(pipelines, _profile("127.0.0.1:1", timeout_s=1.0))
    result = _tick(nowhere, None)
    assert "Kafka broker unreachable at 127.0.0.1:1" in result.skip_message


def test_without_a_broker_configured_there_is_no_submission_sensor(tmp_path: Path) -> None:
    assert build_kafka_submissions(_pipelines(tmp_path), _profile("")) is None


def test_submissions_over_the_teams_run_limit_wait_in_order_and_none_is_lost(
    kafka_broker: MockKafka, tmp_path: Path
) -> None:
    """A Kafka submission is admitted like a gateway one: over the team's max_concurrent_runs
    it is not run, not dead-lettered and not committed: it (and what follows it in its
    partition) is read again next tick, and runs once the team is under its limit."""
    from quantos_assets.tenancy.teams import TeamsFile

    teams = TeamsFile.model_validate({"teams": {"research": {"max_concurrent_runs": 2}}})
    pipelines = _pipelines(tmp_path)
    kafka_broker.produce(
        TOPIC, [{"spec_ref": "xs_signal", "runtime_params": _params(n)} for n in range(1, 5)]
    )
    sensor = build_kafka_submissions(pipelines, _profile(kafka_broker.bootstrap), teams=teams)

    first = _tick(sensor, None)
    assert (
        len(first.run_requests) == 2
    )  # the team's limit; the other two wait (not dead-lettered: all four run)
    # The runs of the first tick are not in this (ephemeral) instance: Dagster creates them
    # after the tick, so the next tick finds the team under its limit again.
    second = _tick(sensor, first.cursor)
    ran = [r.tags["quantos/submission_id"] for r in [*first.run_requests, *second.run_requests]]
    assert sorted(ran) == ["sub-001", "sub-002", "sub-003", "sub-004"]
    third = _tick(sensor, second.cursor)
    assert not third.run_requests
    assert kafka_broker.committed(TOPIC, GROUP) == kafka_broker.end_offsets(TOPIC)
