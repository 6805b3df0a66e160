"""How lake maintenance treats the lake (quantos_assets/lake/upkeep.py), from the profile.

QUANTOS_LAKE_SNAPSHOT_DAYS       unpinned snapshots older than this expire (default 7)
QUANTOS_LAKE_ORPHAN_GRACE_HOURS  files no snapshot names are removed once this old
                                 (default 24: a writer's files are unnamed until it commits)
QUANTOS_LAKE_COMPACT_MIN_FILES   a partition of this many small files is rewritten as one
                                 (default 4)
QUANTOS_LAKE_SMALL_FILE_MB       what counts as small (default 32)
QUANTOS_LAKE_MAINTENANCE_CRON    the daily schedule, UTC (default "30 6 * * *": after US
                                 and European closes' nightly loads, before Asia opens)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from resources.env_numbers import env_number


@dataclass(frozen=True)
class LakeUpkeep:
    snapshot_days: float = 7.0
    orphan_grace_hours: float = 24.0
    compact_min_files: int = 4
    small_file_mb: int = 32
    cron: str = "30 6 * * *"


def lake_upkeep_settings(env: Mapping[str, str]) -> LakeUpkeep:
    """The settings; ValueError (one line naming the variable) on a bad value."""
    cron = env.get("QUANTOS_LAKE_MAINTENANCE_CRON") or LakeUpkeep.cron
    # Imported only when set: the profile is read by every CLI command, Dagster costs ~1 s.
    if cron != LakeUpkeep.cron and not _valid_cron(cron):
        raise ValueError(f"QUANTOS_LAKE_MAINTENANCE_CRON: not a cron string: {cron!r}")
    return LakeUpkeep(
        snapshot_days=env_number(
            env, "QUANTOS_LAKE_SNAPSHOT_DAYS", LakeUpkeep.snapshot_days, at_least=0
        ),
        orphan_grace_hours=env_number(
            env, "QUANTOS_LAKE_ORPHAN_GRACE_HOURS", LakeUpkeep.orphan_grace_hours, at_least=0
        ),
        compact_min_files=int(
            env_number(
                env, "QUANTOS_LAKE_COMPACT_MIN_FILES", LakeUpkeep.compact_min_files, at_least=2
            )
        ),
        small_file_mb=int(
            env_number(env, "QUANTOS_LAKE_SMALL_FILE_MB", LakeUpkeep.small_file_mb, at_least=1)
        ),
        cron=cron,
    )


def _valid_cron(cron: str) -> bool:
    from dagster._utils.schedules import is_valid_cron_string

    return is_valid_cron_string(cron)
