"""Profiles built from dicts, for tests: what a builder is given instead of the environment."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from resources.profile import REPO_ROOT, Profile, active_profile


def _suite_teams_file() -> Path:
    """deploy/teams.yaml with `tests` added to every team's entrypoints: python_task steps
    refuse entrypoints outside the allow-list of the pipeline's team, and the suite's own tasks
    live under `tests.` (tests/integration/test_kinds_entrypoints.py, tests/e2e/fault_tasks.py).
    """
    data = yaml.safe_load((REPO_ROOT / "deploy" / "teams.yaml").read_text())
    for policy in [data.setdefault("defaults", {}), *data.get("teams", {}).values()]:
        policy["entrypoints"] = [*policy.get("entrypoints", ["quantos_assets.tasks"]), "tests"]
    folder = Path(tempfile.mkdtemp(prefix="quantos-teams-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "teams.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


SUITE_TEAMS = _suite_teams_file()
LOCAL = active_profile({"QUANTOS_ENV": "local", "QUANTOS_TEAMS": str(SUITE_TEAMS)})


def prod_profile(**env: str) -> Profile:
    """The prod profile with placeholder stores (nothing here reads or writes them); `env`
    adds or overrides variables, e.g. QUANTOS_RAY_ADDRESS."""
    return active_profile(
        {
            "QUANTOS_ENV": "prod",
            "QUANTOS_CATALOG_URI": "postgresql+psycopg2://quantos@catalog/iceberg",
            "QUANTOS_WAREHOUSE": "s3://quantos-lake/warehouse",
            "QUANTOS_ARTIFACTS": "s3://quantos-artifacts",
            "QUANTOS_TEAMS": str(SUITE_TEAMS),
            **env,
        }
    )


def runners(profile: Profile = LOCAL) -> dict[Any, Any]:
    """The runner of each kind, as a code location built from `profile` has them."""
    from quantos_assets.kinds.registry import build_runners

    return dict(build_runners(profile))
