"""Lake maintenance as a Dagster job of the code location (its daily schedule is
sensors/lake_schedule.py; `quantos lake maintain` runs the same pass from the CLI).

A platform job, not a team's: it reads every pipeline's tables and appends to the audit
trail, so its step gets the audit key (like the promotion gates) and runs no team code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dagster import Failure, JobDefinition, job, op

from quantos_assets.k8s.step_config import (
    K8S_CONFIG_TAG,
    platform_step_k8s_config,
    with_audit_key,
)
from quantos_assets.spec.derived_names import LAKE_JOB, LAKE_OP
from resources.lake_upkeep_settings import LakeUpkeep
from resources.run_tag_keys import TAG_KIND


def build_lake_job(
    pipelines: Mapping[str, str] | Callable[[], Mapping[str, str]], settings: LakeUpkeep
) -> JobDefinition:
    """`pipelines`: pipeline_id -> team, the namespaces the pass maintains; a callable is
    asked at each run (the platform location reads the registry then, so a pipeline
    registered since the location loaded is maintained too)."""

    @op(
        name=LAKE_OP,
        out={},  # nothing for the IO manager to store: the lake itself is the output
        required_resource_keys={"io_manager", "artifact_store", "audit"},
        # In staging/prod its pod is hardened like every step's and gets the audit key.
        tags=with_audit_key({TAG_KIND: "lake", K8S_CONFIG_TAG: platform_step_k8s_config(LAKE_JOB)}),
    )
    def maintain_lake(context):  # unannotated: see [tool.mypy]
        # imported here: pandas and pyiceberg cost a code location's every load ~1 s otherwise
        from quantos_assets.lake.upkeep import maintain

        namespaces = dict(pipelines() if callable(pipelines) else pipelines)
        report = maintain(
            context.instance,
            context.resources.io_manager,
            context.resources.artifact_store,
            context.resources.audit.log(),
            namespaces,
            settings,
        )
        counts: dict[str, int] = {}
        for action in report.actions:
            key = f"{action.action} {action.decision}"
            counts[key] = counts.get(key, 0) + 1
        context.log.info(
            f"lake maintenance over {len(namespaces)} pipeline(s): "
            + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to do")
        )
        for note in report.notes:
            context.log.warning(note)
        if report.problems:
            raise Failure(
                description=f"{len(report.problems)} table(s) not maintained: "
                + "; ".join(report.problems[:5]),
                allow_retries=False,
            )

    @job(
        name=LAKE_JOB,
        description="Pins, ttl_days, compaction, snapshot expiry and orphan removal over "
        "every pipeline's Iceberg tables; each action in the audit trail.",
        tags={TAG_KIND: "lake"},
    )
    def lake_maintenance():
        maintain_lake()

    return lake_maintenance
