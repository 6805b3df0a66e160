"""The environment, resolved in one place.

`QUANTOS_ENV=local` (the default) needs nothing but the Python environment:
SQLite catalog, file warehouse, a local artifact folder, DuckDB, a local Ray.
`staging`/`prod` read their endpoints from the environment; nothing secret
lives in the repository.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("local", "staging", "prod")


class ProfileError(ValueError):
    """A missing or invalid setting; the message names the variable."""


@dataclass(frozen=True)
class Profile:
    name: str
    data_dir: Path
    specs_dir: Path
    catalog_uri: str
    warehouse: str
    artifacts_root: str
    s3_endpoint: str | None
    ray_address: str | None

    @property
    def is_local(self) -> bool:
        return self.name == "local"


def active_profile(environ: dict[str, str] | None = None) -> Profile:
    env = dict(os.environ if environ is None else environ)
    name = env.get("QUANTOS_ENV", "local")
    if name not in PROFILES:
        raise ProfileError(f"QUANTOS_ENV: unknown profile '{name}' (expected {', '.join(PROFILES)})")
    data_dir = Path(env.get("QUANTOS_DATA_DIR") or REPO_ROOT / ".quantos").resolve()
    specs_dir = Path(env.get("QUANTOS_SPECS_DIR") or REPO_ROOT / "specs").resolve()
    if name == "local":
        return Profile(
            name=name,
            data_dir=data_dir,
            specs_dir=specs_dir,
            catalog_uri=env.get("QUANTOS_CATALOG_URI") or f"sqlite:///{data_dir / 'catalog.db'}",
            warehouse=env.get("QUANTOS_WAREHOUSE") or f"file://{data_dir / 'warehouse'}",
            artifacts_root=env.get("QUANTOS_ARTIFACTS") or str(data_dir / "artifacts"),
            s3_endpoint=env.get("QUANTOS_S3_ENDPOINT"),
            ray_address=env.get("QUANTOS_RAY_ADDRESS"),
        )
    missing = [v for v in ("QUANTOS_CATALOG_URI", "QUANTOS_WAREHOUSE", "QUANTOS_ARTIFACTS") if not env.get(v)]
    if missing:
        raise ProfileError(f"QUANTOS_ENV={name}: set {', '.join(missing)}")
    return Profile(
        name=name,
        data_dir=data_dir,
        specs_dir=specs_dir,
        catalog_uri=env["QUANTOS_CATALOG_URI"],
        warehouse=env["QUANTOS_WAREHOUSE"],
        artifacts_root=env["QUANTOS_ARTIFACTS"],
        s3_endpoint=env.get("QUANTOS_S3_ENDPOINT"),
        ray_address=env.get("QUANTOS_RAY_ADDRESS"),
    )


def build_resources(profile: Profile) -> dict[str, Any]:
    """The resource dict every pipeline's assets are bound to."""
    from dagster import PipesSubprocessClient

    from resources.artifact_store import ArtifactStore
    from resources.lake_io_manager import LakeIOManager
    from resources.ray_cluster import RayResource
    from resources.sql_engine import DuckDBEngine

    if profile.is_local:
        profile.data_dir.mkdir(parents=True, exist_ok=True)
        (profile.data_dir / "warehouse").mkdir(exist_ok=True)
    artifact_store = ArtifactStore(root=profile.artifacts_root, endpoint_url=profile.s3_endpoint)
    return {
        "io_manager": LakeIOManager(
            catalog_uri=profile.catalog_uri,
            warehouse=profile.warehouse,
            s3_endpoint=profile.s3_endpoint,
            artifact_store=artifact_store,
        ),
        "artifact_store": artifact_store,
        "sql_engine": DuckDBEngine(),
        "ray": RayResource(address=profile.ray_address),
        "pipes_subprocess_client": PipesSubprocessClient(),
    }
