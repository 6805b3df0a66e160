"""Assemble the code location: every valid spec, its resources, sensors.

Kept apart from `definitions.py` so the CLI and tests can build a location for
one spec or one directory without touching the environment's registry.
"""
from __future__ import annotations

import logging
from pathlib import Path

from dagster import AssetsDefinition, AssetSpec, Definitions, ScheduleDefinition, SensorDefinition

from quantos_assets.bulk_build import cyclic_gc_paused
from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.placement import PlacementError
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec_registry import scan_specs
from resources.profile import Profile, active_profile, build_executor, build_resources
from sensors.openlineage import build_lineage_sensor
from sensors.registry import build_location_sensors, build_triggers

log = logging.getLogger("quantos.definitions")
INVALID_GROUP = "invalid_specs"


def build_pipelines(
    loaded: list[LoadedSpec], invalid: dict[Path, list[str]]
) -> list[PipelineDefs]:
    pipelines: list[PipelineDefs] = []
    for item in loaded:
        try:
            pipelines.append(build_pipeline(item))
        except PlacementError as err:
            invalid[item.path or Path(item.spec.pipeline_id)] = [
                f"{item.path}:1: resources: {err}"
            ]
    return pipelines


def invalid_spec_markers(invalid: dict[Path, list[str]]) -> list[AssetSpec]:
    """Invalid specs show up in the UI as assets in their own group, errors as text."""
    return [
        AssetSpec(
            key=[INVALID_GROUP, path.stem.replace("-", "_").replace(".", "_")],
            group_name=INVALID_GROUP,
            description="This spec failed validation and was left out:\n\n"
            + "\n".join(f"    {line}" for line in lines),
            metadata={"errors": "\n".join(lines), "file": str(path)},
            tags={"quantos/invalid": "true"},
        )
        for path, lines in invalid.items()
    ]


def build_definitions(
    profile: Profile | None = None, specs_dir: Path | None = None, *, dbt: bool | None = None
) -> Definitions:
    """`dbt`: include the dbt models (default: the profile's QUANTOS_DBT)."""
    profile = profile or active_profile()
    scan = scan_specs(specs_dir or profile.specs_dir)
    invalid = dict(scan.invalid)
    pipelines = build_pipelines(scan.valid, invalid)
    for path, lines in invalid.items():
        log.error("spec %s left out:\n%s", path, "\n".join(lines))
    with_dbt = profile.dbt if dbt is None else dbt
    return definitions_for(pipelines, profile, invalid, dbt_models(pipelines, profile) if with_dbt else [])


def dbt_models(pipelines: list[PipelineDefs], profile: Profile) -> list[AssetsDefinition]:
    """The dbt project's models; like an invalid spec, a broken project is logged and left out."""
    # Imported here: dagster-dbt (and dbt-core) cost ~2 s, paid only where dbt is on.
    from quantos_assets.dbt_models import DbtModelsError, build_dbt_assets

    try:
        return build_dbt_assets(pipelines, profile)
    except DbtModelsError as err:
        log.error("dbt models left out: %s", err)
        return []


def definitions_for(
    pipelines: list[PipelineDefs],
    profile: Profile,
    invalid: dict[Path, list[str]] | None = None,
    extra_assets: list[AssetsDefinition] | None = None,
) -> Definitions:
    assets = [a for p in pipelines for a in p.assets] + list(extra_assets or [])
    triggers = [*build_triggers(pipelines), *build_location_sensors(pipelines)]
    lineage = build_lineage_sensor(pipelines, profile)  # None when QUANTOS_LINEAGE=off
    if lineage is not None:
        triggers.append(lineage)
    with cyclic_gc_paused():
        defs = Definitions(
            assets=[*assets, *invalid_spec_markers(invalid or {})],
            asset_checks=[c for p in pipelines for c in p.asset_checks()],
            jobs=[p.job for p in pipelines],
            schedules=[t for t in triggers if isinstance(t, ScheduleDefinition)],
            sensors=[t for t in triggers if isinstance(t, SensorDefinition)],
            resources=build_resources(profile),
            # the forkserver executor preloads this location (the module workspace.yaml names)
            executor=build_executor(profile, preload=["definitions.definitions"]),
        )
        # Resolve now (Dagster caches it): the code server would do it right after
        # loading anyway, and doing it here keeps it inside the GC pause.
        repository = defs.get_repository_def()
        for pipeline in pipelines:
            repository.get_job(pipeline.job.name)
    return defs
