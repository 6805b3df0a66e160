"""A spec's kafka_lag trigger against a real Kafka-protocol broker: lag over the threshold
requests a run (lag per partition reported), debounced by min_interval, quiet once the
group catches up, and a missing topic or dead broker is a skipped tick naming the cause."""

from __future__ import annotations

import json

import pytest
from dagster import build_sensor_context
from kafka_broker import MockKafka
from profiles import LOCAL

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec_text
from resources.kafka_client import KafkaSettings
from sensors.kafka_lag import build_lag_sensors

pytestmark = pytest.mark.integration

SPEC = """\
version: 1
pipeline_id: tick_features
nodes:
  - id: bars
    kind: trino_sql
    params: {{sql: "select 1 as x"}}
    outs: [bars]
triggers:
  - kafka_lag: {{topic: {topic}, group: feature-builders, threshold: 5, min_interval: 2m}}
"""


def _sensor(bootstrap: str, topic: str = "md.ticks"):
    pipeline = build_pipeline(
        load_spec_text(SPEC.format(topic=topic), "tick_features.yaml", "yaml"), LOCAL
    )
    [sensor] = build_lag_sensors(pipeline, KafkaSettings(bootstrap=bootstrap, timeout_s=1.5))
    return sensor


def test_lag_over_the_threshold_runs_the_pipeline_once_per_min_interval(
    kafka_broker: MockKafka,
) -> None:
    kafka_broker.produce("md.ticks", [{"px": i} for i in range(12)])  # 3 per partition
    kafka_broker.commit("md.ticks", "feature-builders", {0: 3, 1: 1})  # lag 0 + 2 + 3 + 3 = 8
    sensor = _sensor(kafka_broker.bootstrap)
    assert sensor.name == "tick_features__kafka_lag_md_ticks"

    first = sensor.evaluate_tick(build_sensor_context())
    [request] = first.run_requests
    assert request.job_name in (None, "tick_features")
    assert request.tags["quantos/kafka_lag"] == "8"
    [observation] = first.asset_events
    assert observation.asset_key.path == ["tick_features", "kafka_lag"]
    assert observation.metadata["total_lag"].value == 8
    assert observation.metadata["lag_by_partition"].value == {
        "md.ticks[2]": 3,
        "md.ticks[3]": 3,
        "md.ticks[1]": 2,
        "md.ticks[0]": 0,
    }

    debounced = sensor.evaluate_tick(build_sensor_context(cursor=first.cursor))
    assert not debounced.run_requests
    assert "min_interval 120s" in debounced.skip_message

    two_minutes_later = json.dumps(
        {"last_request_at": json.loads(first.cursor)["last_request_at"] - 121}
    )
    again = sensor.evaluate_tick(build_sensor_context(cursor=two_minutes_later))
    assert len(again.run_requests) == 1

    kafka_broker.commit("md.ticks", "feature-builders", {p: 3 for p in range(4)})
    caught_up = sensor.evaluate_tick(build_sensor_context(cursor=two_minutes_later))
    assert not caught_up.run_requests
    assert (
        caught_up.skip_message
        == "lag 0 of group feature-builders on md.ticks is within threshold 5"
    )


def test_missing_topic_and_unreachable_broker_skip_with_the_cause(kafka_broker: MockKafka) -> None:
    missing = _sensor(kafka_broker.bootstrap, topic="md.nothing")
    assert (
        "topic 'md.nothing' does not exist"
        in missing.evaluate_tick(build_sensor_context()).skip_message
    )
    nowhere = _sensor("127.0.0.1:1")
    assert (
        "Kafka broker unreachable at 127.0.0.1:1"
        in nowhere.evaluate_tick(build_sensor_context()).skip_message
    )


def test_without_a_broker_configured_there_is_no_lag_sensor() -> None:
    pipeline = build_pipeline(
        load_spec_text(SPEC.format(topic="md.ticks"), "t.yaml", "yaml"), LOCAL
    )
    assert build_lag_sensors(pipeline, KafkaSettings(bootstrap=None)) == []
