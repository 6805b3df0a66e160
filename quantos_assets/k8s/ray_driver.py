"""A ray_job's step as a thin driver of the Ray cluster (staging/prod with QUANTOS_RAY_ADDRESS).

The work of a ray_job then runs on the Ray cluster's workers (`deploy/k8s/raycluster-gpu.yaml`),
sized by the node's cpu/mem/gpu (`placement.ray_worker_resources`). Left as it was, the step pod
would reserve the same GPU and cores for a process that only waits on the cluster. So the step
keeps its place in the run (same labels, hardening and secret scopes) but gets the pools file's
`ray_driver` room on the launcher's pool (`step_config.launcher_pool`), the Ray token (no other
step gets it) and the label the Ray head's NetworkPolicy admits; the workers' share is recorded
on the pod as an annotation, so a preview (`quantos manifests`) shows where the resources went.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from quantos_assets.placement import Pool, load_ray_driver, ray_train_workers, ray_worker_resources
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from quantos_assets.spec.quantities import format_bytes, format_cpu
from resources.profile import Cluster

# The token Secret: one in the steps' namespace (this one) and one with the same value beside
# the RayCluster, which KubeRay reads from `authOptions.secretName` under this key.
RAY_AUTH_SECRET = "quantos-ray-auth"
RAY_AUTH_KEY = "auth_token"
# Pod label the Ray head's NetworkPolicy admits; only thin drivers carry it.
RAY_DRIVER_LABEL = "quantos.io/ray-driver"
RAY_WORKERS_ANNOTATION = "quantos.io/ray-workers"


def drives_ray_cluster(node: Node, cluster: Cluster) -> bool:
    """Whether this node's step is a thin driver: a ray_job where a Ray cluster is configured."""
    return node.kind is NodeKind.ray_job and cluster.ray_cluster is not None


def ray_token_env() -> list[dict[str, Any]]:
    """The driver's Ray credentials: token mode named explicitly (a driver without a token then
    fails at connect with Ray's own message) and the token from its Secret, key by key."""
    return [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {
            "name": "RAY_AUTH_TOKEN",
            "value_from": {"secret_key_ref": {"name": RAY_AUTH_SECRET, "key": RAY_AUTH_KEY}},
        },
    ]


def thin_driver(
    config: Mapping[str, Any], spec: DagSpec, node: Node, pools: dict[str, Pool]
) -> dict[str, Any]:
    """`config` (the node's step config, already on the driver's pool) made a thin driver."""
    driver = load_ray_driver()
    workers = ray_train_workers(node)
    per_worker = ray_worker_resources(spec, node, pools)
    container = dict(config["container_config"])
    container["resources"] = {
        "requests": {"cpu": format_cpu(driver.cpu_request), "memory": format_bytes(driver.mem)},
        "limits": {"cpu": format_cpu(driver.cpu_limit), "memory": format_bytes(driver.mem)},
    }
    container["env"] = [*container.get("env", []), *ray_token_env()]
    labels = {**config["pod_template_spec_metadata"]["labels"], RAY_DRIVER_LABEL: "true"}
    recorded = json.dumps(
        {"workers": workers, "per_worker": per_worker}, sort_keys=True, separators=(",", ":")
    )
    return {
        **config,
        "container_config": container,
        "pod_template_spec_metadata": {
            **config["pod_template_spec_metadata"],
            "labels": labels,
            "annotations": {RAY_WORKERS_ANNOTATION: recorded},
        },
        "job_metadata": {**config["job_metadata"], "labels": labels},
    }
