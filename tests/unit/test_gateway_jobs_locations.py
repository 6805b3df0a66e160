"""The gateway's scheduled jobs with a code location per team (sensors/gateway_jobs.py `own`):
a location fires its own pipelines' jobs and leaves every other one alone: no problem
reported, no cursor moved, so the location that serves the job still fires it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRun
from dagster._core.storage.tags import RUN_KEY_TAG
from dagster._core.utils import make_new_run_id
from team_specs import TWO_TEAMS, team_spec

from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from quantos_assets.stores.job_store import JobStore, NewJob
from quantos_assets.tenancy.teams import load_teams
from resources.profile import Profile, active_profile
from sensors.gateway_jobs import evaluate_jobs, fire_key
from sensors.run_usage import InstanceUsage, gateway_store

TEAMS = TWO_TEAMS


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    specs = tmp_path / "specs"
    specs.mkdir()
    for pid, team in [("alpha_daily", "alpha"), ("beta_daily", "beta")]:
        (specs / f"{pid}.yaml").write_text(yaml.safe_dump(team_spec(pid, team)))
    (tmp_path / "teams.yaml").write_text(TEAMS)
    return active_profile(
        {
            "QUANTOS_ENV": "local",
            "QUANTOS_DATA_DIR": str(tmp_path / "data"),
            "QUANTOS_SPECS_DIR": str(specs),
            "QUANTOS_TEAMS": str(tmp_path / "teams.yaml"),
            "QUANTOS_GATEWAY_DB": f"sqlite:///{tmp_path / 'gateway.db'}",
        }
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as made:
        yield made


def _job(store: JobStore, team: str, pipeline_id: str, due: float) -> str:
    return store.create(
        NewJob(
            team=team,
            actor="t",
            type="pipeline",
            pipeline_id=pipeline_id,
            spec_sha256="a" * 64,
            runtime_params={},
            nodes=[],
            description="",
            execution_time=due,
            cron=None,
            timezone="UTC",
        )
    ).id


def _pipeline(profile: Profile, pid: str) -> PipelineDefs:
    return build_pipeline(load_spec(profile.specs_dir / f"{pid}.yaml"), profile)


def test_a_location_fires_its_own_jobs_and_leaves_the_others_untouched(
    profile: Profile, instance: DagsterInstance
) -> None:
    store = JobStore(gateway_store(profile.gateway_store_url).engine)
    now = time.time()
    alpha = _job(store, "alpha", "alpha_daily", now - 30)
    beta = _job(store, "beta", "beta_daily", now - 30)
    beta_bad = _job(store, "beta", "beta_daily", now - 30)
    with sqlite3.connect(profile.gateway_store_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE gateway_jobs SET timezone = 'Mars/Olympus' WHERE id = ?", (beta_bad,))
    teams = load_teams(profile.teams_file, required=True)
    usage = InstanceUsage(instance, gateway_store(profile.gateway_store_url))
    runnable = {"alpha_daily": _pipeline(profile, "alpha_daily")}

    cursor: dict[str, float] = {}
    tick = evaluate_jobs(profile, teams, runnable, usage, cursor, now, frozenset(runnable))
    assert [r.job_name for r in tick.requests] == ["alpha_daily"]
    assert tick.requests[0].tags["quantos/job_id"] == alpha
    assert tick.problems == [] and tick.waiting == []  # beta's jobs: not alpha's to report
    assert set(cursor) == {alpha}  # nor to move past

    # The one-location workspace (own=None) fires alpha's and reports beta's as missing.
    single: dict[str, float] = {}
    tick = evaluate_jobs(profile, teams, runnable, usage, single, now)
    assert any(p.startswith(f"{beta}: pipeline 'beta_daily' is not in") for p in tick.problems)
    assert any(p.startswith(f"{beta_bad}: not fired: unknown timezone") for p in tick.problems)
    assert beta in single

    # Beta's location still fires beta's job, and reports its own bad row.
    beta_runnable = {"beta_daily": _pipeline(profile, "beta_daily")}
    beta_cursor: dict[str, float] = {}
    tick = evaluate_jobs(
        profile, teams, beta_runnable, usage, beta_cursor, now, frozenset(beta_runnable)
    )
    assert [r.tags["quantos/job_id"] for r in tick.requests] == [beta]
    assert tick.problems == [f"{beta_bad}: not fired: unknown timezone 'Mars/Olympus'"]


def test_a_job_for_another_teams_pipeline_is_refused_by_that_pipelines_location(
    profile: Profile, instance: DagsterInstance
) -> None:
    """A row naming alpha's pipeline under team beta (an older gateway, a hand edit) is
    alpha's location's to judge, and the owner rule refuses it there."""
    store = JobStore(gateway_store(profile.gateway_store_url).engine)
    now = time.time()
    forged = _job(store, "beta", "alpha_daily", now - 30)
    teams = load_teams(profile.teams_file, required=True)
    usage = InstanceUsage(instance, gateway_store(profile.gateway_store_url))
    alpha = {"alpha_daily": _pipeline(profile, "alpha_daily")}
    beta = {"beta_daily": _pipeline(profile, "beta_daily")}

    tick = evaluate_jobs(profile, teams, beta, usage, {}, now, frozenset(beta))
    assert tick.requests == [] and tick.problems == []
    tick = evaluate_jobs(profile, teams, alpha, usage, {}, now, frozenset(alpha))
    assert tick.requests == []
    [problem] = tick.problems
    assert problem.startswith(f"{forged}: firing of ") and "refused" in problem
    assert "belongs to team alpha" in problem


def test_a_firing_another_location_requested_is_not_fired_again(
    profile: Profile, instance: DagsterInstance
) -> None:
    """Dagster skips a run key only for the sensor that requested it, and a sensor is keyed
    by its location: at the split (or a pipeline's move to another location or shard) the new
    location's sensor has no cursor and fired again each job's latest firing, every one-off
    job ever scheduled included."""
    store = JobStore(gateway_store(profile.gateway_store_url).engine)
    now = time.time()
    fired = store.get(_job(store, "alpha", "alpha_daily", now - 3600))
    fresh = _job(store, "alpha", "alpha_daily", now - 60)
    assert fired is not None
    # the single location fired the first one an hour ago
    instance.add_run(
        DagsterRun(
            job_name="alpha_daily",
            run_id=make_new_run_id(),
            tags={RUN_KEY_TAG: fire_key(fired, fired.execution_time)},
        )
    )
    teams = load_teams(profile.teams_file, required=True)
    usage = InstanceUsage(instance, gateway_store(profile.gateway_store_url))
    runnable = {"alpha_daily": _pipeline(profile, "alpha_daily")}
    cursor: dict[str, float] = {}  # the new location's sensor: no cursor yet
    tick = evaluate_jobs(profile, teams, runnable, usage, cursor, now, frozenset(runnable))
    assert [r.tags["quantos/job_id"] for r in tick.requests] == [fresh]
    assert cursor == {fired.id: fired.execution_time, fresh: pytest.approx(now - 60)}
    assert tick.problems == []
