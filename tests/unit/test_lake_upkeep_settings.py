"""QUANTOS_LAKE_*: lake maintenance's settings come through the profile, a bad value is one
line naming the variable."""

from __future__ import annotations

import pytest

from resources.lake_upkeep_settings import LakeUpkeep
from resources.profile import ProfileError, active_profile


def test_defaults_and_overrides() -> None:
    assert active_profile({}).lake_upkeep == LakeUpkeep()
    upkeep = active_profile(
        {"QUANTOS_LAKE_SNAPSHOT_DAYS": "2.5", "QUANTOS_LAKE_MAINTENANCE_CRON": "0 5 * * 1-5"}
    ).lake_upkeep
    assert (upkeep.snapshot_days, upkeep.cron) == (2.5, "0 5 * * 1-5")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("QUANTOS_LAKE_SNAPSHOT_DAYS", "soon", "expected a number, got 'soon'"),
        ("QUANTOS_LAKE_COMPACT_MIN_FILES", "1", "expected at least 2, got '1'"),
        ("QUANTOS_LAKE_SMALL_FILE_MB", "0", "expected at least 1, got '0'"),
        ("QUANTOS_LAKE_MAINTENANCE_CRON", "daily", "not a cron string: 'daily'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(name: str, value: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        active_profile({name: value})
    assert str(err.value) == f"{name}: {message}"
