"""Every schedule and sensor of the code location, from the loaded specs."""

from __future__ import annotations

from dagster import ScheduleDefinition, SensorDefinition

from quantos_assets.pipeline_assets import PipelineDefs
from resources.kafka_client import KafkaSettings
from resources.profile import Profile
from sensors.freshness import build_freshness_sensor
from sensors.gateway_jobs import build_gateway_jobs_sensor
from sensors.kafka_lag import build_lag_sensors
from sensors.kafka_submissions import build_kafka_submissions
from sensors.run_notifications import build_run_notifications
from sensors.session_schedule import build_session_schedule
from sensors.session_sync import build_session_sync

Trigger = ScheduleDefinition | SensorDefinition


def build_triggers(pipelines: list[PipelineDefs], kafka: KafkaSettings) -> list[Trigger]:
    """Trading-calendar schedules, partition syncs and Kafka lag triggers (on `kafka`), per spec."""
    triggers: list[Trigger] = []
    for pipeline in pipelines:
        if pipeline.spec.schedule is not None:
            triggers.append(build_session_schedule(pipeline))
        if pipeline.spec.partitions is not None:
            triggers.append(build_session_sync(pipeline))
        if pipeline.checks:
            triggers.append(build_freshness_sensor(pipeline))
        triggers.extend(build_lag_sensors(pipeline, kafka))
    return triggers


def build_location_sensors(
    pipelines: list[PipelineDefs], profile: Profile
) -> list[SensorDefinition]:
    """Sensors of the whole code location: the gateway's scheduled jobs, and where the profile
    configures them the Kafka submission queue and run notifications (Slack / webhook)."""
    submissions = build_kafka_submissions(pipelines, profile)
    gateway_jobs = build_gateway_jobs_sensor(pipelines, profile)
    return [
        *([submissions] if submissions else []),
        *([gateway_jobs] if gateway_jobs else []),
        *build_run_notifications(pipelines, profile.notify),
    ]
