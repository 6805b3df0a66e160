"""Every schedule and sensor of the code location, from the loaded specs."""
from __future__ import annotations

from typing import Union

from dagster import ScheduleDefinition, SensorDefinition

from quantos_assets.pipeline_assets import PipelineDefs
from sensors.session_schedule import build_session_schedule
from sensors.session_sync import build_session_sync

Trigger = Union[ScheduleDefinition, SensorDefinition]


def build_triggers(pipelines: list[PipelineDefs]) -> list[Trigger]:
    """Trading-calendar schedules and partition syncs (Kafka triggers: issue 5)."""
    triggers: list[Trigger] = []
    for pipeline in pipelines:
        if pipeline.spec.schedule is not None:
            triggers.append(build_session_schedule(pipeline))
        if pipeline.spec.partitions is not None:
            triggers.append(build_session_sync(pipeline))
    return triggers
