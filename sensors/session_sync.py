"""Keep a spec's session partitions up to date: every session from `start` to today.

Session partitions are dynamic (docs/decisions.md): without this sensor a new
session would only appear when a schedule tick registers it, and backfills of
past sessions would find no keys.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from quantos_assets.calendars.partitions import missing_session_keys, partitions_name
from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.spec.derived_names import session_sync_name

SYNC_INTERVAL_SECONDS = 3600


def build_session_sync(
    pipeline: PipelineDefs, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> SensorDefinition:
    spec = pipeline.spec
    name = partitions_name(spec)

    @sensor(
        name=session_sync_name(spec.pipeline_id),
        minimum_interval_seconds=SYNC_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Adds every {spec.partitions.calendar if spec.partitions else ''} session "
            "to the partitions of this pipeline as it arrives"
        ),
    )
    def _sync(context: SensorEvaluationContext) -> SkipReason | SensorResult:
        existing = set(context.instance.get_dynamic_partitions(name))
        missing = missing_session_keys(spec, existing, clock())
        if not missing:
            return SkipReason("every session up to today is a partition")
        return SensorResult(dynamic_partitions_requests=[dynamic_add(name, missing)])

    return _sync


def dynamic_add(name: str, keys: list[str]) -> AddDynamicPartitionsRequest:
    return DynamicPartitionsDefinition(name=name).build_add_request(keys)
