"""Every schedule and sensor of the code location, from the loaded specs."""

from __future__ import annotations

from collections.abc import Callable

from dagster import ScheduleDefinition, SensorDefinition

from quantos_assets.pipeline_assets import PipelineDefs
from resources.kafka_client import KafkaSettings
from resources.profile import Profile
from sensors.arrivals import build_arrival_sensors
from sensors.freshness import build_freshness_sensor
from sensors.gateway_jobs import build_gateway_jobs_sensor
from sensors.kafka_lag import build_lag_sensors
from sensors.kafka_submissions import build_kafka_submissions
from sensors.run_notifications import build_run_notifications
from sensors.session_schedule import build_session_schedule
from sensors.session_sync import build_session_sync

Trigger = ScheduleDefinition | SensorDefinition


def build_triggers(
    pipelines: list[PipelineDefs], kafka: KafkaSettings, profile: Profile | None = None
) -> list[Trigger]:
    """Trading-calendar schedules, partition syncs, Kafka lag triggers (on `kafka`) and, with
    the `profile` whose S3 settings and landing root they list, data-arrival triggers."""
    triggers: list[Trigger] = []
    for pipeline in pipelines:
        if pipeline.spec.schedule is not None:
            triggers.append(build_session_schedule(pipeline))
        if pipeline.spec.partitions is not None:
            triggers.append(build_session_sync(pipeline))
        if pipeline.checks:
            triggers.append(build_freshness_sensor(pipeline))
        triggers.extend(build_lag_sensors(pipeline, kafka))
        if profile is not None:
            triggers.extend(build_arrival_sensors(pipeline, profile))
    return triggers


def build_location_sensors(
    pipelines: list[PipelineDefs], profile: Profile, location: str | None = None
) -> list[SensorDefinition]:
    """Sensors of the whole code location: the gateway's scheduled jobs, and where the profile
    configures them the Kafka submission queue and run notifications (Slack / webhook).
    `location`: its name where the workspace has a location per team; each location's
    sensors then handle its own pipelines' submissions and jobs only."""
    route = registry_router(profile) if location is not None else None
    submissions = build_kafka_submissions(pipelines, profile, location=location, route=route)
    gateway_jobs = build_gateway_jobs_sensor(pipelines, profile, only_own=location is not None)
    return [
        *([submissions] if submissions else []),
        *([gateway_jobs] if gateway_jobs else []),
        *build_run_notifications(pipelines, profile.notify),
    ]


def build_platform_sensors(profile: Profile) -> list[SensorDefinition]:
    """The platform location's: a Kafka sensor that serves no pipeline and sends the
    submissions no team's location serves to the dead-letter topic."""
    from quantos_assets.tenancy.locations import PLATFORM_LOCATION

    unknown = build_kafka_submissions(
        [], profile, location=PLATFORM_LOCATION, route=registry_router(profile)
    )
    return [unknown] if unknown is not None else []


def registry_router(profile: Profile) -> Callable[[str], str | None]:
    """A Kafka ref -> the location serving it, read from the registry at each message (a
    pipeline registered since this location loaded is routed right). A broken teams file
    raises: the tick fails and is retried with its cursor unchanged, nothing is skipped."""
    from quantos_assets.registry_locations import RegistryLocations
    from quantos_assets.tenancy.teams import load_teams

    def route(ref: str) -> str | None:
        teams = load_teams(profile.teams_file, required=profile.teams_file_named)
        return RegistryLocations.read(profile.specs_dir, teams).location_of_ref(ref)

    return route
