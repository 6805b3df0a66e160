"""dbt on the active profile: which dbt target runs, and the settings it is handed.

`dbt_project/profiles.yml` reads its connection settings with `env_var()`; this
resource fills those variables from the resolved `Profile` (so local defaults such as
the catalog under QUANTOS_DATA_DIR are decided in one place, `profile.py`) and adds
them to the environment of each dbt subprocess only. Secrets (QUANTOS_TRINO_PASSWORD)
are not copied: they reach dbt from the pod's own environment.

dagster-dbt (and with it dbt-core, ~2 s of imports) is imported only when dbt runs,
so binding this resource costs nothing for code that never runs dbt.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from resources.profile import REPO_ROOT, Profile, ProfileError

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# The schema dbt models are written to (DuckDB file locally, the Iceberg catalog on Trino).
DBT_SCHEMA = "analytics"
_ENV_LOCK = threading.Lock()


def dbt_target(profile: Profile) -> str:
    """local -> dbt-duckdb over the Iceberg SqlCatalog; staging/prod -> dbt-trino."""
    return "local" if profile.is_local else "prod"


def dbt_env(profile: Profile) -> dict[str, str]:
    """The QUANTOS_* variables profiles.yml reads for the profile's target."""
    if profile.is_local:
        return {
            "QUANTOS_CATALOG_URI": profile.catalog_uri,
            "QUANTOS_WAREHOUSE": _file_uri(profile.warehouse),
            "QUANTOS_DBT_DUCKDB_PATH": str(profile.data_dir / "dbt" / "quantos.duckdb"),
            "QUANTOS_DBT_SCHEMA": DBT_SCHEMA,
        }
    env = {
        "QUANTOS_TRINO_PORT": str(profile.trino_port),
        "QUANTOS_TRINO_USER": profile.trino_user,
        "QUANTOS_TRINO_CATALOG": profile.trino_catalog,
        "QUANTOS_DBT_SCHEMA": DBT_SCHEMA,
    }
    if profile.trino_host:
        env["QUANTOS_TRINO_HOST"] = profile.trino_host
    return env


def _file_uri(warehouse: str) -> str:
    """pyiceberg needs a URI; the profile allows a bare folder (as the lake IO manager does)."""
    return warehouse if "://" in warehouse else Path(warehouse).expanduser().resolve().as_uri()


class DbtResource(ConfigurableResource):
    """Runs the dbt CLI through dagster-dbt's `DbtCliResource` on the profile's target."""

    project_dir: str = Field(description="The dbt project (dbt_project.yml, profiles.yml).")
    target: str = Field(description="profiles.yml target: local or prod.")
    env: dict[str, str] = Field(default_factory=dict, description="Settings for profiles.yml.")
    profile_name: str = Field(default="local", description="QUANTOS_ENV the settings came from.")

    def cli(
        self,
        args: Sequence[str],
        *,
        context: Any = None,
        raise_on_error: bool = True,
        target_path: Path | None = None,
    ) -> Any:
        """`DbtCliResource.cli` (a `DbtCliInvocation`, stream it) with the profile's settings."""
        if self.target == "prod" and not self.env.get("QUANTOS_TRINO_HOST"):
            raise ProfileError(
                f"QUANTOS_ENV={self.profile_name}: dbt models run on Trino: set QUANTOS_TRINO_HOST"
            )
        if "QUANTOS_DBT_DUCKDB_PATH" in self.env:
            Path(self.env["QUANTOS_DBT_DUCKDB_PATH"]).parent.mkdir(parents=True, exist_ok=True)
        dbt = _dbt_cli_class()(
            project_dir=self.project_dir,
            profiles_dir=self.project_dir,
            target=self.target,
            dbt_executable=_dbt_executable(),
        )
        # DbtCliResource builds the subprocess environment from os.environ when it starts
        # dbt (inside cli()); the lock keeps two threads from mixing their settings.
        with _ENV_LOCK, _environ(self.env):
            return dbt.cli(
                args, context=context, raise_on_error=raise_on_error, target_path=target_path
            )


def _dbt_executable() -> str:
    """This environment's dbt, even when its bin/ is not on PATH (`.venv/bin/dagster dev`)."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


@functools.cache
def _dbt_cli_class() -> type:
    """DbtCliResource without the two things it does before dbt even starts.

    - `dbt --version` in a subprocess, to tell dbt Core from the Fusion engine: that
      command asks PyPI for the latest release (seconds per step; a hang where there is
      no internet). We run dbt Core from this environment: its version is the package's.
    - An in-process dbt adapter (loads every macro, ~5 s here), used only by
      `fetch_row_counts`/`fetch_column_metadata`, which we do not call.
    Both are private API: re-check on a dagster-dbt upgrade (pinned in pyproject.toml).
    """
    from dagster_dbt import DbtCliResource
    from dbt.version import __version__ as dbt_core_version
    from packaging.version import Version

    class _DbtCoreCli(DbtCliResource):
        @functools.cached_property
        def _cli_version(self) -> Version:
            return Version(dbt_core_version)

        # dagster-dbt declares BaseAdapter, but its one caller holds `BaseAdapter | None`
        # (None: no in-process adapter, as for the Fusion engine), so None is safe here.
        def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
            return None

    return _DbtCoreCli


def dbt_resource(profile: Profile, project_dir: Path = DBT_PROJECT_DIR) -> DbtResource:
    return DbtResource(
        project_dir=str(project_dir),
        target=dbt_target(profile),
        env=dbt_env(profile),
        profile_name=profile.name,
    )


@contextmanager
def _environ(extra: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
