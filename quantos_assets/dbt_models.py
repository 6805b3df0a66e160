"""The dbt project's models as assets of the same graph as the spec pipelines.

A dbt source is an Iceberg table a spec writes (schema = pipeline_id, table = out), so
the translator maps it to the spec's own asset key `[pipeline_id, out]`: lineage, the
UI graph, selections (`xs_momentum_v1/universe+`) and automation run across both.
Models are keyed `[dbt, model]` in the group `dbt`; dbt tests become asset checks
(blocking when their severity is error, dagster-dbt's default), so a failing test
fails the step and dbt skips the models downstream of it.

A model that reads (through its sources, at any depth) a session-partitioned pipeline
is partitioned by that pipeline's sessions; its run passes the session range to dbt as
vars `session_start`/`session_end` (see dbt_project/macros/session_filter.sql). Models
are grouped into one `@dbt_assets` per partitions definition.

The manifest is prepared when the project is installed (`make install` runs
`python -m quantos_assets.dbt_models`, a `dbt parse`) and re-parsed at a load only when
a project file changed or the profile's dbt settings differ (`manifest_is_current`);
otherwise a code-location load only reads it. dagster-dbt is imported only by
the functions that need it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    BackfillPolicy,
    PartitionsDefinition,
)

from quantos_assets.calendars.partitions import session_partitions
from quantos_assets.spec.derived_names import DBT_GROUP as DERIVED_DBT_GROUP
from quantos_assets.spec.derived_names import DBT_OPS
from quantos_assets.spec.models import DagSpec
from resources.dbt import DBT_PROJECT_DIR, dbt_env, dbt_resource, dbt_target
from resources.profile import Profile, ProfileError, active_profile

log = logging.getLogger("quantos.dbt")
DBT_GROUP = DERIVED_DBT_GROUP
DBT_KEY_PREFIX = DERIVED_DBT_GROUP
DBT_RESOURCE_KEY = "dbt"


class DbtModelsError(ValueError):
    """The dbt project cannot become assets; one line naming the model or file."""


def source_asset_key(props: Mapping[str, Any]) -> AssetKey:
    """A source is the spec output stored at Iceberg `{namespace}.{table}`."""
    return AssetKey([props["schema"], props["identifier"]])


def model_asset_key(name: str) -> AssetKey:
    return AssetKey([DBT_KEY_PREFIX, name])


def _translator_class() -> type:
    from dagster_dbt import DagsterDbtTranslator

    class QuantosDbtTranslator(DagsterDbtTranslator):
        """Sources -> the spec's asset; models -> [dbt, name], eager after their upstreams."""

        def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
            if dbt_resource_props["resource_type"] == "source":
                return source_asset_key(dbt_resource_props)
            return model_asset_key(dbt_resource_props["name"])

        def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
            return DBT_GROUP

        def get_automation_condition(
            self, dbt_resource_props: Mapping[str, Any]
        ) -> AutomationCondition | None:
            # Runs once its spec upstreams (or dbt parents) update, when the
            # default_automation_condition_sensor is switched on.
            if dbt_resource_props["resource_type"] == "source":
                return None
            return AutomationCondition.eager()

    return QuantosDbtTranslator


def prepare_manifest(profile: Profile, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """`dbt parse` into `target/` with the profile's own settings.

    Parsing with the settings dbt later runs with keeps dbt's partial parsing valid (a
    different profile forces a full re-parse, seconds per run), which is why this
    replaces dagster-dbt's `prepare_if_dev` (it parses without our settings).
    """
    from dagster_dbt.errors import DagsterDbtError

    try:
        dbt_resource(profile, project_dir).cli(
            ["parse", "--quiet"], target_path=Path("target")
        ).wait()
    except (DagsterDbtError, OSError) as err:  # dbt's errors are many-lined: keep one
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise DbtModelsError(f"{project_dir}: dbt parse failed: {first.strip()}") from None
    (project_dir / _PARSE_STAMP).write_text(json.dumps({"settings": _settings_digest(profile)}))
    return project_dir / "target" / "manifest.json"


def load_manifest(profile: Profile, project_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The DbtProject and its manifest, re-parsed only when it is not current.

    Not "on every load under `dagster dev`" (dagster-dbt's `prepare_if_dev`): every run
    and step worker of `dagster dev` inherits its environment and loads the code location,
    so that parsed dbt again in each run (seconds before the run could start). A
    manifest is current when it was parsed with this profile's dbt settings after the
    last change to the project's files, so an edited model still shows up on reload.
    """
    from dagster_dbt import DbtProject

    project = DbtProject(
        project_dir=project_dir, profiles_dir=project_dir, target=dbt_target(profile)
    )
    if not manifest_is_current(profile, project_dir):
        (project_dir / "target").mkdir(exist_ok=True)
        # One parse at a time into target/ (several workers may load at once); the
        # others find it current once they hold the lock.
        with open(project_dir / "target" / ".parse.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not manifest_is_current(profile, project_dir):
                if not project.manifest_path.exists():
                    log.warning(
                        "dbt: %s missing (run `make install`); parsing now", project.manifest_path
                    )
                prepare_manifest(profile, project_dir)
    return project, json.loads(project.manifest_path.read_text())


_PARSE_STAMP = Path("target") / "quantos_parse.json"
# dbt's own outputs and installed packages: not sources of the manifest.
_NOT_SOURCES = {"target", "logs", "dbt_packages"}


# Settings that change the manifest's content. Not the target or its connection settings
# (catalog, DuckDB file, warehouse, Trino): they differ per data dir (every test instance
# would re-parse) and per environment, while the image's manifest, parsed at build, is
# the one a staging/prod code location reads (parsing there would need Trino's settings).
_MANIFEST_SETTINGS = ("QUANTOS_DBT_SCHEMA",)


def _settings_digest(profile: Profile) -> str:
    env = dbt_env(profile)
    settings = {"env": {k: env.get(k) for k in _MANIFEST_SETTINGS}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _newest_source(project_dir: Path) -> float:
    newest = 0.0
    for path in project_dir.rglob("*"):
        rel = path.relative_to(project_dir).parts
        if rel[0] in _NOT_SOURCES or not path.is_file():
            continue
        newest = max(newest, path.stat().st_mtime)
    return newest


def manifest_is_current(profile: Profile, project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """Parsed with this profile's settings, and no project file changed since."""
    manifest = project_dir / "target" / "manifest.json"
    stamp = project_dir / _PARSE_STAMP
    try:
        recorded = json.loads(stamp.read_text()).get("settings")
        parsed_at = manifest.stat().st_mtime
    except (OSError, ValueError, AttributeError):
        return False
    return recorded == _settings_digest(profile) and parsed_at >= _newest_source(project_dir)


def model_partitions(
    manifest: Mapping[str, Any], specs: Sequence[DagSpec]
) -> dict[str, PartitionsDefinition | None]:
    """Each model's partitions: those of the session-partitioned pipelines it reads."""
    by_pipeline = {s.pipeline_id: session_partitions(s) for s in specs}
    nodes: Mapping[str, Any] = manifest["nodes"]
    sources: Mapping[str, Any] = manifest["sources"]
    memo: dict[str, set[str]] = {}

    def partition_names(unique_id: str) -> set[str]:
        if unique_id in memo:
            return memo[unique_id]
        memo[unique_id] = set()
        if unique_id in sources:
            part = by_pipeline.get(source_asset_key(sources[unique_id]).path[0])
            names = {part.name} if part is not None and part.name is not None else set()
        else:
            node = nodes.get(unique_id, {})
            names = set().union(
                *(partition_names(u) for u in node.get("depends_on", {}).get("nodes", []))
            )
        memo[unique_id] = names
        return names

    defs_by_name = {p.name: p for p in by_pipeline.values() if p is not None and p.name is not None}
    result: dict[str, PartitionsDefinition | None] = {}
    for unique_id, node in nodes.items():
        if node["resource_type"] != "model":
            continue
        names = partition_names(unique_id)
        if len(names) > 1:
            raise DbtModelsError(
                f"dbt model {node['name']}: reads sessions of {', '.join(sorted(names))};"
                " a model can follow one pipeline's sessions"
            )
        result[node["name"]] = defs_by_name[names.pop()] if names else None
    return result


def source_pipelines(profile: Profile, project_dir: Path = DBT_PROJECT_DIR) -> set[str]:
    """The pipelines whose tables the dbt project reads (its sources' namespaces): what a
    location serving the dbt models needs of the registry, whichever locations those are."""
    _, manifest = load_manifest(profile, project_dir)
    return {source_asset_key(s).path[0] for s in manifest["sources"].values()}


def build_dbt_assets(
    specs: Sequence[DagSpec],
    profile: Profile,
    project_dir: Path = DBT_PROJECT_DIR,
) -> list[AssetsDefinition]:
    """One `@dbt_assets` per partitions definition (unpartitioned, each session set);
    `specs`: those of the pipelines the models read (their session partitions)."""
    from dagster_dbt import dbt_assets

    project, manifest = load_manifest(profile, project_dir)
    translator = _translator_class()()
    groups: dict[str | None, list[str]] = {}
    partitions: dict[str | None, PartitionsDefinition | None] = {}
    for model, part in sorted(model_partitions(manifest, specs).items()):
        name = getattr(part, "name", None)
        groups.setdefault(name, []).append(model)
        partitions[name] = part

    built: list[AssetsDefinition] = []
    for name, models in groups.items():
        part = partitions[name]

        @dbt_assets(
            manifest=manifest,
            project=project,
            select=" ".join(models),
            name=f"{DBT_OPS}__{name}" if name else DBT_OPS,
            partitions_def=part,
            # A session range is one dbt run: the models filter on the whole range.
            backfill_policy=BackfillPolicy.single_run() if part is not None else None,
            dagster_dbt_translator=translator,
            required_resource_keys={DBT_RESOURCE_KEY},
        )
        def _models(context):  # context unannotated: see [tool.mypy]
            args = ["build"]
            if context.has_partition_key or context.has_partition_key_range:
                sessions = context.partition_key_range  # one key: start == end
                args += [
                    "--vars",
                    json.dumps({"session_start": sessions.start, "session_end": sessions.end}),
                ]
            dbt = getattr(context.resources, DBT_RESOURCE_KEY)
            yield from dbt.cli(args, context=context).stream()

        built.append(_models)
    return built


def main() -> int:
    """`python -m quantos_assets.dbt_models`: prepare the manifest (make install)."""
    import sys

    try:
        path = prepare_manifest(active_profile())
    except (DbtModelsError, ProfileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"dbt manifest: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
