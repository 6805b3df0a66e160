"""The Kubernetes Job k8s_job_executor would launch for each step, built by dagster-k8s itself,
and the Pod an image-only python_task's step launches through PipesK8sClient (`pipes_pod.py`).

A preview (`quantos manifests`) and the tests' evidence must not be a hand-written imitation
of what Dagster does: this replays the executor's own merge (op tag, then the submission's
per_step_k8s_config) and calls dagster-k8s's `construct_dagster_k8s_job`, so a config key
dagster-k8s would drop or rename is dropped or renamed here too.
"""

from __future__ import annotations

from typing import Any

from quantos_assets.k8s.pipes_pod import pipes_pod_manifest
from quantos_assets.k8s.step_config import (
    K8S_CONFIG_TAG,
    launches_pod,
    op_name,
    submission_run_config,
)
from quantos_assets.spec.models import RuntimeParams

DEFAULT_IMAGE = "ghcr.io/archetype/quantos-user-code:latest"
DAGSTER_HOME = "/opt/dagster/dagster_home"
INSTANCE_CONFIG_MAP = "dagster-instance"


def step_job_manifests(
    pipeline: Any, params: RuntimeParams | None = None, image: str = DEFAULT_IMAGE
) -> dict[str, dict[str, Any]]:
    """op name -> Job manifest (camelCase dict, as `kubectl` would receive it)."""
    spec = pipeline.spec
    per_step: dict[str, Any] = {}
    if params is not None:
        run_config = submission_run_config(spec, params, pipeline.cluster)
        per_step = run_config["execution"]["config"]["per_step_k8s_config"]
    ops = [getattr(a, "op", None) for a in pipeline.assets]
    return ops_job_manifests(
        spec.pipeline_id, [op for op in ops if op is not None], per_step, image
    )


def ops_job_manifests(
    job: str, ops: list[Any], per_step: dict[str, Any] | None = None, image: str = DEFAULT_IMAGE
) -> dict[str, dict[str, Any]]:
    """op name -> the Job manifest k8s_job_executor builds for that op of `job` (ops without
    a k8s config tag are left out)."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_k8s_job_name,
        get_user_defined_k8s_config,
    )
    from kubernetes.client import ApiClient

    job_config = DagsterK8sJobConfig(
        job_image=image,
        dagster_home=DAGSTER_HOME,
        instance_config_map=INSTANCE_CONFIG_MAP,
    )
    api = ApiClient()
    manifests: dict[str, dict[str, Any]] = {}
    for op in ops:
        if K8S_CONFIG_TAG not in op.tags:
            continue
        # The same two merges as dagster_k8s.executor.K8sStepHandler._get_container_context.
        context = K8sContainerContext(
            run_k8s_config=get_user_defined_k8s_config({K8S_CONFIG_TAG: op.tags[K8S_CONFIG_TAG]})
        ).merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    (per_step or {}).get(op.name, {})
                )
            )
        )
        job_name = f"dagster-step-{get_k8s_job_name('preview', op.name)}"
        manifest = construct_dagster_k8s_job(
            job_config=job_config,
            args=["dagster", "api", "execute_step"],
            job_name=job_name,
            pod_name=job_name,
            component="step_worker",
            user_defined_k8s_config=context.run_k8s_config,
            labels={"dagster/job": job, "dagster/op": op.name},
        )
        manifests[op.name] = api.sanitize_for_serialization(manifest)
    return manifests


def pipes_pod_manifests(
    pipeline: Any, params: RuntimeParams | None = None
) -> dict[str, dict[str, Any]]:
    """op name -> the Pod each image-only python_task's step creates through PipesK8sClient."""
    spec = pipeline.spec
    return {
        op_name(spec, node): pipes_pod_manifest(spec, node, params)
        for node in spec.nodes
        if launches_pod(node)
    }


__all__ = ["op_name", "pipes_pod_manifests", "step_job_manifests"]
