"""Every schedule and sensor of the code location, from the loaded specs."""
from __future__ import annotations

from typing import Union

from dagster import ScheduleDefinition, SensorDefinition

from quantos_assets.pipeline_assets import PipelineDefs

Trigger = Union[ScheduleDefinition, SensorDefinition]


def build_triggers(pipelines: list[PipelineDefs]) -> list[Trigger]:
    """No spec block produces a trigger yet (schedules: issue 3, Kafka: issue 5)."""
    return []
