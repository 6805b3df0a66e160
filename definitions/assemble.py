"""Assemble the code location: every valid spec, its resources, sensors.

Kept apart from `definitions.py` so the CLI and tests can build a location for
one spec or one directory without touching the environment's registry.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DagsterInvalidDefinitionError,
    Definitions,
    JobDefinition,
    LoggerDefinition,
    ScheduleDefinition,
    SensorDefinition,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from quantos_assets.asset_job_launch import asset_job_launch
from quantos_assets.bulk_build import cyclic_gc_paused
from quantos_assets.lake.job import build_lake_job
from quantos_assets.pipeline_assets import PipelineDefs, build_pipeline
from quantos_assets.placement import PlacementError
from quantos_assets.registry_locations import RegistryLocations
from quantos_assets.spec.derived_names import INVALID_SPECS_GROUP
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec_registry import scan_specs
from quantos_assets.tenancy.locations import PLATFORM_LOCATION
from quantos_assets.tenancy.read_grants import read_problems
from quantos_assets.tenancy.teams import TeamsFile, TeamsFileError, load_teams, pipeline_team
from resources.profile import Profile, active_profile, build_executor, build_resources
from sensors.lake_schedule import build_lake_schedule
from sensors.openlineage import build_lineage_sensor
from sensors.registry import build_location_sensors, build_platform_sensors, build_triggers

log = logging.getLogger("quantos.definitions")
# The module workspace.yaml's locations load (`attribute`: the location's name).
_LOCATION_MODULE = "definitions.locations"
INVALID_GROUP = INVALID_SPECS_GROUP


def build_pipelines(
    loaded: list[LoadedSpec], invalid: dict[Path, list[str]], profile: Profile
) -> list[PipelineDefs]:
    pipelines: list[PipelineDefs] = []
    for item in loaded:
        try:
            pipelines.append(build_pipeline(item, profile))
        except PlacementError as err:
            invalid[item.path or Path(item.spec.pipeline_id)] = [f"{item.path}:1: resources: {err}"]
        except DagsterInvalidDefinitionError as err:  # a name Dagster refuses that the rules let by
            invalid[item.path or Path(item.spec.pipeline_id)] = [
                f"{item.path}:1: pipeline_id: Dagster refused it: {_first_line(err)}"
            ]
    return pipelines


def granted_pipelines(
    pipelines: list[PipelineDefs],
    profile: Profile,
    registered: frozenset[str],
    invalid: dict[Path, list[str]],
) -> list[PipelineDefs]:
    """The pipelines whose external inputs their team may read (deploy/teams.yaml `reads`);
    the others are left out like an invalid spec, so a spec placed in the registry by hand
    reads no more than an admitted one. `registered`: every pipeline id of the registry, whose
    namespaces need a grant naming them. Read at every load: a revoked grant takes effect on
    the next reload."""
    if not any(p.spec.external_inputs for p in pipelines):
        return pipelines
    try:
        teams: TeamsFile | None = load_teams(profile.teams_file, required=profile.teams_file_named)
        broken = ""
    except TeamsFileError as err:
        teams, broken = None, str(err)
    kept: list[PipelineDefs] = []
    for pipeline in pipelines:
        spec = pipeline.spec
        if not spec.external_inputs:
            kept.append(pipeline)
            continue
        where = pipeline.source or Path(spec.pipeline_id)
        if teams is None:
            invalid[where] = [
                f"{where}:1: external_inputs: the read grants are unreadable: {broken}"
            ]
            continue
        team = pipeline_team(spec.labels)
        problems = read_problems(spec, teams.reads_for(team), team, registered)
        if problems:
            invalid[where] = [f"{where}:{_line(pipeline, p)}: {p}: {m}" for p, m in problems]
            continue
        kept.append(pipeline)
    return kept


def _line(pipeline: PipelineDefs, path: str) -> int:
    """The line of a field in the pipeline's spec file (1 when it has no file)."""
    if pipeline.source is None:
        return 1
    from quantos_assets.spec.loader import load_document
    from quantos_assets.spec.models import DagSpec
    from quantos_assets.spec.source_map import parse_path
    from quantos_assets.spec_rules.firm import FIRM_RULES

    _, positions = load_document(pipeline.source, DagSpec, FIRM_RULES)
    return positions.line(parse_path(path))


def invalid_spec_markers(invalid: dict[Path, list[str]]) -> list[AssetSpec]:
    """Invalid specs show up in the UI as assets in their own group, errors as text."""
    return [
        AssetSpec(
            key=[INVALID_GROUP, name],
            group_name=INVALID_GROUP,
            description="This spec failed validation and was left out:\n\n"
            + "\n".join(f"    {line}" for line in lines),
            metadata={"errors": "\n".join(lines), "file": str(path)},
            tags={"quantos/invalid": "true"},
        )
        for name, (path, lines) in zip(_marker_names(list(invalid)), invalid.items(), strict=True)
    ]


def _marker_names(paths: list[Path]) -> list[str]:
    """One asset name per invalid file, never two alike: `a-b.yaml` and `a_b.yaml`, or
    `x.yaml` and `x.json`, would otherwise share a key and fail the whole location."""
    names: list[str] = []
    for path in paths:
        name = re.sub(r"[^A-Za-z0-9_]", "_", path.stem) or "spec"
        if name in names or name != path.stem:
            name = f"{name}_{hashlib.sha256(path.name.encode()).hexdigest()[:8]}"
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


class LocationError(Exception):
    """A code location that cannot be built as named: one line for the location's load error."""


def build_definitions(
    profile: Profile | None = None,
    specs_dir: Path | None = None,
    *,
    dbt: bool | None = None,
    location: str | None = None,
) -> Definitions:
    """`dbt`: include the dbt models (default: the profile's QUANTOS_DBT). `location`: only
    what that code location serves (tenancy/locations.py); None: the whole registry in one
    location, as `quantos run` and single-location deployments build it."""
    profile = profile or active_profile()
    scan = scan_specs(specs_dir or profile.specs_dir)
    place = None if location is None else _locations(profile, specs_dir, location)
    if place is None:
        items, invalid = scan.valid, dict(scan.invalid)
    else:  # parse this location's specs only
        items = scan.load(place.pipelines_in(location or ""))
        invalid = place.invalid_in(location or "")
    pipelines = build_pipelines(items, invalid, profile)
    registered = frozenset(e.pipeline_id for e in scan.entries) | frozenset(scan.index.pipelines)
    pipelines = granted_pipelines(pipelines, profile, registered, invalid)
    for path, lines in invalid.items():
        log.error("spec %s left out:\n%s", path, "\n".join(lines))
    platform = location is None or location == PLATFORM_LOCATION
    with_dbt = platform and (profile.dbt if dbt is None else dbt)

    def assembled(pipelines: list[PipelineDefs]) -> Definitions:
        models = dbt_models(_dbt_specs(pipelines, place, profile), profile) if with_dbt else []
        return definitions_for(
            pipelines, profile, invalid, models, location=location, registry=place
        )

    try:
        return loadable(assembled(pipelines))
    except DagsterInvalidDefinitionError as err:
        # The spec rules make every name injective; should Dagster still refuse the whole,
        # find the specs it refuses rather than take every team's pipelines down.
        log.error(
            "the code location does not build (%s); leaving out the specs that break it",
            _first_line(err),
        )
    before = set(invalid)
    pipelines = buildable_pipelines(pipelines, profile, invalid)
    for path in set(invalid) - before:
        log.error("spec %s left out:\n%s", path, "\n".join(invalid[path]))
    return loadable(assembled(pipelines))


def _locations(profile: Profile, specs_dir: Path | None, location: str) -> RegistryLocations:
    try:
        teams = load_teams(profile.teams_file, required=profile.teams_file_named)
        place = RegistryLocations.read(specs_dir or profile.specs_dir, teams)
    except TeamsFileError as err:
        raise LocationError(f"code location {location!r}: {err}") from None
    if location not in place.plan.names():
        raise LocationError(
            f"{location!r} is not a code location of {profile.teams_file} (it has "
            f"{', '.join(place.plan.names())}): regenerate the workspace with "
            "`quantos registry workspace`"
        )
    return place


def _dbt_specs(
    pipelines: list[PipelineDefs], place: RegistryLocations | None, profile: Profile
) -> list[DagSpec]:
    """The specs of the pipelines the dbt models read: in a single location its own; in the
    platform location's, read from the registry, whichever team's location serves them."""
    if place is None:
        return [p.spec for p in pipelines]
    from quantos_assets.dbt_models import DbtModelsError, source_pipelines

    try:
        wanted = source_pipelines(profile)
    except DbtModelsError:
        return []  # dbt_models reports it, once
    return [s.spec for s in place.scan.load(wanted)]


def loadable(defs: Definitions) -> Definitions:
    """`defs`, once every job resolves, Dagster's implicit asset job over all assets
    included: what the code server builds right after loading (cached, so paid once), and
    where ops of two specs sharing a name fail ("conflicting node definitions")."""
    with cyclic_gc_paused():
        defs.get_repository_def().get_all_jobs()
    return defs


def buildable_pipelines(
    pipelines: list[PipelineDefs], profile: Profile, invalid: dict[Path, list[str]]
) -> list[PipelineDefs]:
    """The pipelines that build together, adding one at a time (a slow path, taken only
    when the whole did not build); each one Dagster refuses beside the earlier ones is
    marked invalid with Dagster's first line."""
    kept: list[PipelineDefs] = []
    for pipeline in pipelines:
        try:
            loadable(definitions_for([*kept, pipeline], profile))
        except DagsterInvalidDefinitionError as err:
            where = pipeline.source or Path(pipeline.spec.pipeline_id)
            invalid[where] = [
                (
                    f"{where}:1: pipeline_id: left out, Dagster refused it beside the other specs: "
                    f"{_first_line(err)}"
                )
            ]
            continue
        kept.append(pipeline)
    return kept


def _first_line(err: Exception) -> str:
    return next(
        (line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__
    )


def dbt_models(specs: list[DagSpec], profile: Profile) -> list[AssetsDefinition]:
    """The dbt project's models; like an invalid spec, a broken project is logged and left out."""
    # Imported here: dagster-dbt (and dbt-core) cost ~2 s, paid only where dbt is on.
    from quantos_assets.dbt_models import DbtModelsError, build_dbt_assets

    try:
        return build_dbt_assets(specs, profile)
    except DbtModelsError as err:
        log.error("dbt models left out: %s", err)
        return []


def definitions_for(
    pipelines: list[PipelineDefs],
    profile: Profile,
    invalid: dict[Path, list[str]] | None = None,
    extra_assets: list[AssetsDefinition] | None = None,
    loggers: dict[str, LoggerDefinition] | None = None,
    *,
    location: str | None = None,
    registry: RegistryLocations | None = None,
) -> Definitions:
    """The code location of `pipelines` on `profile`; also what `quantos run` executes one
    spec's job from (with its progress logger), so a local run is built by the same code.
    `location`: its name, where the workspace has one per team (None: the single location,
    which also holds the platform's jobs); `registry`: where every pipeline is served."""
    # One asset per external table, however many pipelines read it; none for a table that a
    # pipeline of this location writes (its asset is the materializable one). A table written
    # in another location stays an unexecutable asset here, joined to its producer's asset in
    # Dagster's workspace graph: a cross-location dependency.
    produced = [a for p in pipelines for a in p.assets]
    produced_keys = {k for a in produced for k in _keys(a)}
    external = {a.key: a for p in pipelines for a in p.external if a.key not in produced_keys}
    assets = [*produced, *external.values(), *(extra_assets or [])]
    triggers: list[ScheduleDefinition | SensorDefinition] = []
    if location != PLATFORM_LOCATION:
        triggers += [
            *build_triggers(pipelines, profile.kafka, profile),
            *build_location_sensors(pipelines, profile, location),
        ]
        lineage = build_lineage_sensor(pipelines, profile)  # None when QUANTOS_LINEAGE=off
        if lineage is not None:
            triggers.append(lineage)
    # Prototype (bench/registry_scale.py --asset-job): no job per pipeline, runs launched on
    # the location's implicit asset job; see docs/decisions.md.
    per_job = not asset_job_launch()
    jobs: list[JobDefinition | UnresolvedAssetJobDefinition] = (
        [p.job for p in pipelines] if per_job else []
    )
    if location is None or location == PLATFORM_LOCATION:
        lake_job = build_lake_job(
            _lake_namespaces(pipelines, profile, location), profile.lake_upkeep
        )
        triggers.append(build_lake_schedule(lake_job, profile.lake_upkeep))
        jobs.append(lake_job)
        if location == PLATFORM_LOCATION:
            triggers += build_platform_sensors(profile)
    with cyclic_gc_paused():
        defs = Definitions(
            assets=[*assets, *invalid_spec_markers(invalid or {})],
            asset_checks=[c for p in pipelines for c in p.asset_checks()],
            jobs=jobs,
            schedules=[t for t in triggers if isinstance(t, ScheduleDefinition)],
            sensors=[t for t in triggers if isinstance(t, SensorDefinition)],
            resources=build_resources(profile),
            # the forkserver executor preloads this location (the module workspace.yaml names)
            executor=build_executor(
                profile,
                preload=["definitions.definitions" if location is None else _LOCATION_MODULE],
            ),
            loggers=loggers,
        )
        # Resolve now (Dagster caches it): the code server would do it right after
        # loading anyway, and doing it here keeps it inside the GC pause.
        repository = defs.get_repository_def()
        for pipeline in pipelines if per_job else ():
            repository.get_job(pipeline.job.name)
    return defs


def _lake_namespaces(
    pipelines: list[PipelineDefs], profile: Profile, location: str | None
) -> Mapping[str, str] | Callable[[], Mapping[str, str]]:
    """pipeline_id -> team of every table lake maintenance keeps: the location's own in a
    single location; the whole registry's, read at each run, in the platform location."""
    if location is None:
        return {p.spec.pipeline_id: pipeline_team(p.spec.labels) or "-" for p in pipelines}

    def registered() -> Mapping[str, str]:
        scan = scan_specs(profile.specs_dir)
        index = scan.index.pipelines
        return {
            e.pipeline_id: e.team or getattr(index.get(e.pipeline_id), "team", None) or "-"
            for e in scan.entries
        }

    return registered


def _keys(asset: AssetsDefinition | AssetSpec) -> set[AssetKey]:
    return {asset.key} if isinstance(asset, AssetSpec) else set(asset.keys)
