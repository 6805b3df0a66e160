"""Suite-wide settings: every test gets its own data dir, nothing touches ~/."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """`--dist loadfile`, with the security suite's modules on one worker (xdist_scope.py)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist_scope import SharedStackScheduling

    return SharedStackScheduling(config, log)


@pytest.fixture(scope="module", autouse=True)
def no_local_ray_outlives_its_module() -> Iterator[None]:
    """A local Ray that a module's in-process runs started (a ray_job step, RayResource with no
    address) is shut down with the module. Left up, it idled in the test worker until a later
    module happened to shut it down: 7 minutes in one suite run, its GCS, raylet, dashboard and
    log monitor costing ~0.1 core all along."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True)
def no_disposed_instance_stays_current() -> Iterator[None]:
    """`with DagsterInstance ...` (instance_for_test included) makes the instance's defs-state
    storage current and its exit never resets it (dagster 1.13: dispose() leaves the exit stack
    open). Every later Definitions resolution in that worker then read the disposed instance's
    deleted SQLite file ("unable to open database file"): reset after each test."""
    yield
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated local profile: catalog, warehouse, artifacts and DAGSTER_HOME."""
    d = tmp_path / "quantos"
    home = d / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("QUANTOS_ENV", "local")
    monkeypatch.setenv("QUANTOS_DATA_DIR", str(d))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return d


@pytest.fixture(scope="session", autouse=True)
def tests_may_run_their_own_entrypoints() -> None:
    """The suite's teams file (tests/profiles.py: `tests` added to every team's entrypoints)
    as QUANTOS_TEAMS, in os.environ, so every `dagster dev` and `quantos` the suite starts
    inherits it; a test that writes its own QUANTOS_TEAMS file still wins. Profiles the tests
    build themselves name it too (profiles.LOCAL)."""
    from profiles import SUITE_TEAMS

    if os.environ.get("QUANTOS_TEAMS"):
        return
    os.environ["QUANTOS_TEAMS"] = str(SUITE_TEAMS)
