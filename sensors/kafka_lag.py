"""Lag triggers: a spec's `triggers: [{kafka_lag: ...}]` as a sensor (seed 000 §4.2, the KEDA
Kafka scaler's rule inside the orchestrator).

Each tick reads the group's lag in O(brokers) round trips (one Metadata, one OffsetFetch,
one ListOffsets per leader) and requests a run when the total exceeds `threshold`, at most
once per `min_interval`: the time of the last request lives in the cursor, so the debounce
survives daemon restarts. Lag per partition is reported as an asset observation on
`[pipeline_id, "kafka_lag"]` and on the run's tags.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorResult,
    sensor,
)

from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.spec.derived_names import KAFKA_LAG_ASSET, topic_label
from quantos_assets.spec.derived_names import lag_sensor_name as derived_lag_sensor_name
from quantos_assets.spec.models import KafkaLag
from resources.kafka_client import (
    GroupLag,
    KafkaClient,
    KafkaProblem,
    KafkaSettings,
)
from resources.run_tag_keys import TAG_GROUP, TAG_LAG, TAG_TOPIC

# The sensor polls at least this often; `min_interval` only spaces out the runs.
POLL_SECONDS = 30


@dataclass(frozen=True)
class LagCursor:
    last_request_at: float | None = None

    @classmethod
    def parse(cls, raw: str | None) -> LagCursor:
        if not raw:
            return cls()
        return cls(json.loads(raw).get("last_request_at"))

    def dump(self) -> str:
        return json.dumps({"last_request_at": self.last_request_at})


def _label(text: str) -> str:
    return topic_label(text)


def lag_sensor_name(pipeline_id: str, trigger: KafkaLag, index: int) -> str:
    return derived_lag_sensor_name(pipeline_id, trigger.topic, index)


def lag_metadata(lag: GroupLag, limit: int = 50) -> dict[str, MetadataValue[Any]]:
    """Total and the partitions furthest behind (all of them up to `limit`)."""
    behind = sorted(lag.by_partition.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [(f"{t}[{p}]", n) for (t, p), n in behind[:limit]]
    return {
        "total_lag": MetadataValue.int(lag.total),
        "partitions": MetadataValue.int(len(lag.end)),
        "partitions_behind": MetadataValue.int(sum(1 for _, n in behind if n > 0)),
        "lag_by_partition": MetadataValue.json(dict(top)),
    }


def evaluate_lag(
    cursor: str | None,
    trigger: KafkaLag,
    pipeline_id: str,
    client: KafkaClient,
    now: float | None = None,
) -> SensorResult:
    state = LagCursor.parse(cursor)
    try:
        lag = client.group_lag(trigger.topic, trigger.group)
    except KafkaProblem as err:
        return SensorResult(skip_reason=str(err), cursor=state.dump())
    observation = AssetObservation(
        asset_key=AssetKey([pipeline_id, KAFKA_LAG_ASSET]),
        metadata={**lag_metadata(lag), "topic": trigger.topic, "group": trigger.group},
    )
    total = lag.total
    now = time.time() if now is None else now
    if total <= trigger.threshold:
        why = (
            f"lag {total} of group {trigger.group} on {trigger.topic} is within threshold "
            f"{trigger.threshold}"
        )
        return SensorResult(skip_reason=why, cursor=state.dump(), asset_events=[observation])
    if state.last_request_at is not None and now - state.last_request_at < trigger.min_interval:
        waited = now - state.last_request_at
        why = (
            f"lag {total} > {trigger.threshold}, but a run was requested {waited:.0f}s ago "
            f"(min_interval {trigger.min_interval:g}s)"
        )
        return SensorResult(skip_reason=why, cursor=state.dump(), asset_events=[observation])
    ends = sum(lag.end.values())
    committed = sum(max(o, 0) for o in lag.committed.values())
    request = RunRequest(
        # The same broker state asks for the same run: a re-evaluated tick adds none.
        run_key=f"{trigger.group}@{trigger.topic}:{ends}:{committed}",
        tags={TAG_LAG: str(total), TAG_TOPIC: _label(trigger.topic), TAG_GROUP: trigger.group},
    )
    return SensorResult(
        run_requests=[request], cursor=LagCursor(now).dump(), asset_events=[observation]
    )


def build_lag_sensors(pipeline: PipelineDefs, settings: KafkaSettings) -> list[SensorDefinition]:
    """One sensor per kafka_lag trigger; none when no broker is configured."""
    # i: the trigger's place among all the spec's triggers (its sensor's name holds it)
    triggers = [(i, t.kafka_lag) for i, t in enumerate(pipeline.spec.triggers) if t.kafka_lag]
    if not triggers:
        return []
    if not settings.enabled:
        return []
    return [_lag_sensor(pipeline, t, i, settings) for i, t in triggers]


def _lag_sensor(
    pipeline: PipelineDefs, trigger: KafkaLag, index: int, settings: KafkaSettings
) -> SensorDefinition:
    pid = pipeline.spec.pipeline_id

    @sensor(
        name=lag_sensor_name(pid, trigger, index),
        job=pipeline.job,
        minimum_interval_seconds=int(min(POLL_SECONDS, max(1.0, trigger.min_interval))),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Runs {pid} when group {trigger.group} lags more than {trigger.threshold} "
            f"messages on {trigger.topic} (at most every {trigger.min_interval:g}s)."
        ),
    )
    def _lag(context):  # context unannotated: see [tool.mypy]
        client = KafkaClient(settings.bootstrap or "", settings.timeout_s)
        return evaluate_lag(context.cursor, trigger, pid, client)

    return _lag
