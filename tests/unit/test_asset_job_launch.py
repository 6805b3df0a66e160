"""The asset-job prototype (quantos_assets/asset_job_launch.py, bench/registry_scale.py
--asset-job): off by default, a location keeps a job per pipeline; on, it serves no job per
pipeline, and a gateway job's firing still runs only its own pipeline's assets, tagged as it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey
from team_specs import TWO_TEAMS, team_spec

from definitions.assemble import build_definitions
from quantos_assets.asset_job_launch import (
    ASSET_JOB_LAUNCH_ENV,
    IMPLICIT_ASSET_JOB,
    launch_asset_keys,
)
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.stores.job_store import ScheduledJob
from resources.profile import Profile, active_profile
from resources.run_tag_keys import TAG_PIPELINE, TAG_TEAM
from sensors.gateway_jobs import fire_request


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    specs = tmp_path / "specs"
    specs.mkdir()
    for pid, team in [("alpha_daily", "alpha"), ("alpha_weekly", "alpha")]:
        (specs / f"{pid}.yaml").write_text(yaml.safe_dump(team_spec(pid, team)))
    (tmp_path / "teams.yaml").write_text(TWO_TEAMS)
    return active_profile(
        {
            "QUANTOS_ENV": "local",
            "QUANTOS_DATA_DIR": str(tmp_path / "data"),
            "QUANTOS_SPECS_DIR": str(specs),
            "QUANTOS_TEAMS": str(tmp_path / "teams.yaml"),
            "QUANTOS_GATEWAY_DB": f"sqlite:///{tmp_path / 'gateway.db'}",
            "QUANTOS_DBT": "off",
        }
    )


def _job_names(profile: Profile) -> set[str]:
    defs = build_definitions(profile, location="team-alpha")
    return {job.name for job in defs.get_repository_def().get_all_jobs()}


def test_a_location_keeps_a_job_per_pipeline_unless_the_prototype_is_on(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"alpha_daily", "alpha_weekly"} <= _job_names(profile)
    monkeypatch.setenv(ASSET_JOB_LAUNCH_ENV, "1")
    names = _job_names(profile)
    assert IMPLICIT_ASSET_JOB in names
    assert not names & {"alpha_daily", "alpha_weekly"}


def test_a_firing_on_the_asset_job_runs_its_own_pipeline_only(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ASSET_JOB_LAUNCH_ENV, "1")
    loaded = load_spec(profile.specs_dir / "alpha_daily.yaml")
    job = ScheduledJob(
        id="job-1",
        team="alpha",
        actor="t",
        type="pipeline",
        pipeline_id="alpha_daily",
        spec_sha256="a" * 64,
        runtime_params={},
        nodes=[],
        description="",
        execution_time=time.time(),
        cron=None,
        timezone="UTC",
        canceled=False,
        created_at=time.time(),
        updated_at=time.time(),
    )
    request = fire_request(job, loaded.spec, time.time(), profile.cluster)
    keys = launch_asset_keys(loaded.spec)
    assert keys and all(k[0] == "alpha_daily" for k in keys)
    assert request.asset_selection == [AssetKey(k) for k in keys]
    assert request.tags[TAG_PIPELINE] == "alpha_daily"
    assert request.tags[TAG_TEAM] == "alpha"
