"""The lake maintenance job's daily schedule, on every profile (QUANTOS_LAKE_MAINTENANCE_CRON,
UTC), running by default: retention that waits for someone to switch it on is not retention."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, JobDefinition, ScheduleDefinition

from quantos_assets.spec.derived_names import LAKE_SCHEDULE
from resources.lake_upkeep_settings import LakeUpkeep


def build_lake_schedule(job: JobDefinition, settings: LakeUpkeep) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=LAKE_SCHEDULE,
        job=job,
        cron_schedule=settings.cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Lake maintenance at {settings.cron} UTC: ttl_days, compaction, snapshot "
        "expiry, orphan removal; never a pinned snapshot",
    )
