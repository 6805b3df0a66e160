"""`quantos run`: materialize one spec in this process on the active profile.

The run goes into the profile's Dagster instance (DAGSTER_HOME, or one under
the data dir), so it is visible in the UI and later runs read its snapshots.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster import DagsterInstance
from dagster._core.utils import make_new_run_id

from quantos_assets.apps.cli.progress import progress_logger
from quantos_assets.observability.traces import run_span
from quantos_assets.pipeline_assets import build_pipeline, node_asset_keys
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec, load_runtime_params
from quantos_assets.spec.models import DagSpec, RuntimeParams
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import Cluster, Profile, active_profile
from resources.run_tag_keys import TAG_RUN_TRACEPARENT


def local_instance(profile: Profile) -> DagsterInstance:
    if os.environ.get("DAGSTER_HOME"):
        from quantos_assets.apps.cli.instance import dagster_home_instance

        return dagster_home_instance(create=True)
    home = profile.data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    return DagsterInstance.from_config(str(home))


def _check_submission(
    spec: DagSpec, params: RuntimeParams, params_path: Path, cluster: Cluster
) -> None:
    """Runtime params production could not honour (unknown compute_pool, a request the asked-for
    pool cannot take, a secrets scope that cannot name a Secret) fail here, before any step runs."""
    from quantos_assets.k8s.step_config import SecretScopeError, submission_run_config
    from quantos_assets.placement import PlacementError

    try:
        submission_run_config(spec, params, cluster)
    except PlacementError as err:
        raise SpecError([f"{params_path}:1: affinity.compute_pool: {err}"]) from None
    except SecretScopeError as err:
        raise SpecError([f"{params_path}:1: secrets_scope: {err}"]) from None


def _check_refs(spec: DagSpec, params: RuntimeParams, params_path: Path, profile: Profile) -> None:
    """Refs name inputs of the pipeline and snapshots the lake still has: checked before the
    run is created (each step checks again before it works, for every other launch path)."""
    from quantos_assets.spec.input_refs import ref_problems
    from resources.input_refs import pins_from_tags
    from resources.lake_io_manager import LakeIOError
    from resources.profile import build_resources

    problems = ref_problems(spec, params)
    if not problems and params.refs:
        lake = build_resources(profile)["io_manager"]
        pins = pins_from_tags(runtime_run_tags(params))
        try:
            lake.check_pins(spec.pipeline_id, pins, spec.external_tables())
        except LakeIOError as err:
            problems.append(str(err))
    if problems:
        raise SpecError([f"{params_path}:1: {line}" for line in problems])


def _check_grants(loaded: LoadedSpec, profile: Profile) -> None:
    """The spec's team may read its external inputs (and run its entrypoints): refused here as
    the gateway and the code location would, before a run exists."""
    if not loaded.spec.external_inputs:
        return  # entrypoints: each python_task step checks its own
    from quantos_assets.admission.registry_view import DirectoryRegistry
    from quantos_assets.apps.cli.team_grants import check_team_grants
    from quantos_assets.tenancy.teams import load_teams

    teams = load_teams(profile.teams_file, required=profile.teams_file_named)
    check_team_grants(loaded, teams, None, DirectoryRegistry(profile.specs_dir).pipelines())


def run_spec(path: Path, select: list[str] | None = None, params_path: Path | None = None) -> int:
    profile = active_profile()
    loaded = load_spec(path)
    _check_grants(loaded, profile)
    pipeline = build_pipeline(loaded, profile)
    spec = loaded.spec
    tags: dict[str, str] = {}
    if params_path is not None:
        params = load_runtime_params(params_path)
        _check_submission(spec, params, params_path, pipeline.cluster)
        _check_refs(spec, params, params_path, profile)
        tags.update(runtime_run_tags(params))
    selection = None
    if select:
        unknown = [n for n in select if n not in {node.id for node in spec.nodes}]
        if unknown:
            raise SpecError([f"{path}: --select: unknown node(s) {', '.join(unknown)}"])
        selection = [
            k for node in spec.nodes if node.id in select for k in node_asset_keys(spec, node)
        ]
    # DESIGN.md §1: the CLI's local run imports definitions/, to build with the same code.
    from definitions.assemble import definitions_for

    defs = definitions_for([pipeline], profile, loggers={"progress": progress_logger(sys.stderr)})
    job = defs.resolve_job_def(pipeline.job.name)
    print(f"running {spec.pipeline_id} on profile {profile.name}", file=sys.stderr)
    run_id = make_new_run_id()
    with local_instance(profile) as instance, run_span(run_id, spec.pipeline_id, tags) as traced:
        # the run's span (traces.py), under which every step's span hangs
        if traced is not None:
            tags[TAG_RUN_TRACEPARENT] = traced
        result = job.execute_in_process(
            instance=instance,
            run_id=run_id,
            tags=tags,
            asset_selection=selection,
            raise_on_error=False,
            # A job only uses loggers named in its run config; the default is the full console log.
            run_config={"loggers": {"progress": {}}},
        )
    status = "succeeded" if result.success else "FAILED"
    print(f"run {result.run_id} {status}", file=sys.stderr)
    return 0 if result.success else 1
