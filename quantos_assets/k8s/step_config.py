"""The `dagster-k8s/config` of one step: placement, resources, hardening, secrets, labels.

k8s_job_executor launches every step as its own Job and reads this dict from the op's
`dagster-k8s/config` tag (DESIGN.md §5, seed 000 §4-§5). Translation only knows the spec, so
the op tag carries what the spec decides (pool, requests/limits, security context). What a
submission decides (runtime priority and affinity, secrets_scope, submission/team labels)
reaches the step through the executor's `per_step_k8s_config` run config, built by
`submission_run_config`; dagster-k8s merges it over the tag (run-level `dagster-k8s/config`
tags are NOT applied to step pods by k8s_job_executor, so a run tag would be silently lost).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from quantos_assets.k8s.ray_driver import drives_ray_cluster, thin_driver
from quantos_assets.kinds.step_environment import SCOPE_ENV_PREFIX
from quantos_assets.placement import Pool, choose_pool, load_pools
from quantos_assets.run_tags import PRIORITY_VALUE
from quantos_assets.spec.models import (
    EXTERNAL_KINDS,
    DagSpec,
    Node,
    NodeKind,
    Priority,
    Qos,
    Resources,
    RuntimeParams,
)
from resources.profile import Cluster
from resources.run_tag_keys import LABEL_PREFIX as TAG_LABEL_PREFIX
from resources.run_tag_keys import TAG_COMPUTE_POOL, TAG_ENV, TAG_SECRETS, TAG_SUBMISSION, TAG_TTL

K8S_CONFIG_TAG = "dagster-k8s/config"
LABEL_PREFIX = "quantos.io/"
TMP_VOLUME = "tmp"
# A fixed non-root UID: runAsNonRoot alone fails pods whose image says USER root by name.
RUN_AS_UID = 10001
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.\-]")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class SecretScopeError(ValueError):
    """A secrets_scope entry that cannot name a Kubernetes Secret (one-line message)."""


def op_name(spec: DagSpec, node: Node) -> str:
    """The op name pipeline_assets gives a node's multi-asset."""
    return f"{spec.pipeline_id}__{node.id}"


def secret_name(scope: str) -> str:
    """One Kubernetes Secret per scope (synced by External Secrets from Vault)."""
    name = f"quantos-scope-{scope}"
    if len(name) > 253 or not _SECRET_NAME.match(name):
        raise SecretScopeError(
            f"secrets_scope '{scope}' cannot name a Kubernetes Secret "
            "(lowercase letters, digits and '-' only)"
        )
    return name


def launches_pod(node: Node) -> bool:
    """An image-only python_task: its step launches the image as a pod of its own (Pipes)."""
    return (
        node.kind is NodeKind.python_task and bool(node.image) and not node.params.get("entrypoint")
    )


def step_k8s_config(
    spec: DagSpec,
    node: Node,
    pool: str | Pool,
    params: RuntimeParams | None = None,
    pools: dict[str, Pool] | None = None,
    *,
    launcher: bool = False,
) -> dict[str, Any]:
    """The `dagster-k8s/config` dict for one node on one pool (params: the submission's).

    `launcher`: the step only launches and watches the node's pod (image-only task), so it
    gets the pool's default resources and no secrets; the pod gets the node's.
    """
    if isinstance(pool, str):
        pool = (pools if pools is not None else load_pools())[pool]
    priority = (params.priority if params and params.priority else None) or spec.slo.priority
    resources = _resources(Resources() if launcher else spec.effective_resources(node), pool)
    labels = _labels(spec, node, pool, params)
    config = hardened_k8s_config(resources, pool, labels, token=launches_pod(node))
    if params and params.secrets_scope and not launcher:
        # Prefixed: a scope's key reaches the python_task child (kinds/step_environment.py,
        # prefix removed) but can neither override nor pass for a setting of the step itself.
        config["container_config"]["env_from"] = [
            {"prefix": SCOPE_ENV_PREFIX, "secret_ref": {"name": secret_name(s)}}
            for s in params.secrets_scope
        ]
    priority_class = pool.priority_class_for(priority)
    if priority_class:
        config["pod_spec_config"]["priority_class_name"] = priority_class
    return config


def hardened_k8s_config(
    resources: dict[str, dict[str, str]], pool: Pool, labels: dict[str, str], *, token: bool
) -> dict[str, Any]:
    """The step pod every step gets: non-root, read-only root filesystem with /tmp the one
    writable place, no capabilities, RuntimeDefault seccomp, on `pool`'s nodes; `token`: only
    a step that creates a pod gets a service-account token."""
    container: dict[str, Any] = {
        "resources": resources,
        "security_context": {
            "run_as_non_root": True,
            "allow_privilege_escalation": False,
            "read_only_root_filesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        # readOnlyRootFilesystem: /tmp is the one writable place (scratch, library caches).
        "volume_mounts": [{"name": TMP_VOLUME, "mount_path": "/tmp"}],
    }
    pod_spec: dict[str, Any] = {
        "node_selector": dict(pool.node_selector),
        "tolerations": [dict(t) for t in pool.tolerations],
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": RUN_AS_UID,
            "run_as_group": RUN_AS_UID,
            "fs_group": RUN_AS_UID,
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": TMP_VOLUME, "empty_dir": {}}],
        # A step never talks to the Kubernetes API (no token means none to steal), except the
        # step of an image-only task, which creates its pod (the pod itself gets no token).
        "automount_service_account_token": token,
    }
    return {
        "container_config": container,
        "pod_spec_config": pod_spec,
        "pod_template_spec_metadata": {"labels": labels},
        "job_metadata": {"labels": labels},
    }


def platform_step_k8s_config(job: str, pool: str = "cpu") -> dict[str, Any]:
    """A platform job's step (lake maintenance): the same hardened pod, the pool's default
    room, labelled with the job instead of a team's pipeline."""
    chosen = load_pools()[pool]
    labels = {f"{LABEL_PREFIX}platform-job": _label_value(job), f"{LABEL_PREFIX}pool": pool}
    config = hardened_k8s_config(_resources(Resources(), chosen), chosen, labels, token=False)
    if chosen.priority_class:
        config["pod_spec_config"]["priority_class_name"] = chosen.priority_class
    return config


def submission_run_config(
    spec: DagSpec, params: RuntimeParams, cluster: Cluster, pools: dict[str, Pool] | None = None
) -> dict[str, Any]:
    """Run config for k8s_job_executor: every step re-placed and labelled for this submission.

    SHALLOW merge: each key given here replaces the op tag's (tolerations of a pool the
    runtime priority moved the step away from must not linger).
    """
    pools = pools if pools is not None else load_pools()
    per_step: dict[str, Any] = {}
    for node in spec.nodes:
        if node.kind in EXTERNAL_KINDS:
            continue
        config = step_config(spec, node, params, cluster, pools)
        per_step[op_name(spec, node)] = {**config, "merge_behavior": "SHALLOW"}
    return {"execution": {"config": {"per_step_k8s_config": per_step}}}


def node_k8s_config(
    spec: DagSpec, node: Node, params: RuntimeParams | None, pools: dict[str, Pool] | None = None
) -> dict[str, Any]:
    """The k8s config of a node's step for a submission (None: the spec alone, as the op tag).

    The one place placement + hardening + secrets are decided: the step Job (op tag and
    per_step_k8s_config) and the Pipes pod of an image-only task (`pipes_pod_base`) both use it.
    """
    pools = pools if pools is not None else load_pools()
    priority = (params.priority if params else None) or spec.slo.priority
    pool = choose_pool(
        spec.effective_resources(node),
        spec.slo.qos,
        priority,
        requested_pool=params.affinity.compute_pool if params else None,
        pools=pools,
    )
    return step_k8s_config(spec, node, pool, params, pools)


def launcher_pool(spec: DagSpec, params: RuntimeParams | None, pools: dict[str, Pool]) -> str:
    """Where a step that only drives work running elsewhere goes (an image-only task's step,
    a ray_job's Ray driver): an on-demand CPU slot at the run's priority. Holding the node's
    GPU (or a spot node that may vanish) while only watching a pod or a Ray cluster would
    waste the one and endanger the other."""
    priority = (params.priority if params else None) or spec.slo.priority
    return choose_pool(Resources(), Qos.on_demand, priority, pools=pools)


def step_config(
    spec: DagSpec,
    node: Node,
    params: RuntimeParams | None,
    cluster: Cluster,
    pools: dict[str, Pool] | None = None,
) -> dict[str, Any]:
    """The k8s config of a node's *step*: the node's own placement; for an image-only task
    the launcher's (its pod gets the node's placement, see `pipes_pod_base`); for a ray_job
    when a Ray cluster runs the work, a thin driver's (its workers get the node's resources,
    see `ray_driver.py`)."""
    pools = pools if pools is not None else load_pools()
    if launches_pod(node):
        return step_k8s_config(
            spec, node, launcher_pool(spec, params, pools), params, pools, launcher=True
        )
    if drives_ray_cluster(node, cluster):
        on_driver_pool = step_k8s_config(
            spec, node, launcher_pool(spec, params, pools), params, pools
        )
        return thin_driver(on_driver_pool, spec, node, pools)
    return node_k8s_config(spec, node, params, pools)


def op_tag_config(
    spec: DagSpec, node: Node, pool: str, cluster: Cluster, pools: dict[str, Pool] | None = None
) -> dict[str, Any]:
    """The `dagster-k8s/config` op tag (the spec alone; `pool` already chosen for the node)."""
    if launches_pod(node) or drives_ray_cluster(node, cluster):
        return step_config(spec, node, None, cluster, pools)
    return step_k8s_config(spec, node, pool, None, pools)


def pipes_pod_base(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(base_pod_meta, base_pod_spec) for `PipesK8sClient.run` from a step's k8s config.

    The Pipes pod of an image-only task is the step pod's twin: same pool, resources,
    security contexts, /tmp volume, secret scopes and labels; only the image differs, and it
    never gets an API token (the step that launches it does). Its scope Secrets come without
    the step's prefix: the image is the node's own code and nothing of the platform's is in
    its pod.
    """
    container = dict(config["container_config"])
    if container.get("env_from"):
        container["env_from"] = [
            {k: v for k, v in e.items() if k != "prefix"} for e in container["env_from"]
        ]
    pod_spec = {
        **config["pod_spec_config"],
        "containers": [container],
        "automount_service_account_token": False,
    }
    return {"labels": dict(config["pod_template_spec_metadata"]["labels"])}, pod_spec


def params_from_run_tags(tags: Mapping[str, str]) -> RuntimeParams | None:
    """The submission a run's tags carry (inverse of run_tags.runtime_run_tags; None: no
    submission).

    Tags are the channel every launch path keeps (gateway, `quantos run --params`, UI
    re-execution), so the Pipes pod of a step gets the submission's secrets and placement
    even where no per_step_k8s_config was passed (in-process runs).
    """
    submission = tags.get(TAG_SUBMISSION)
    if not submission:
        return None
    by_value = {str(v): p for p, v in PRIORITY_VALUE.items()}
    priority: Priority | None = by_value.get(tags.get("dagster/priority", ""))
    return RuntimeParams.model_validate(
        {
            "submission_id": submission,
            **({"env": tags[TAG_ENV]} if tags.get(TAG_ENV) else {}),
            "labels": {
                k[len(TAG_LABEL_PREFIX) :]: v
                for k, v in tags.items()
                if k.startswith(TAG_LABEL_PREFIX)
            },
            "secrets_scope": [s for s in tags.get(TAG_SECRETS, "").split(",") if s],
            **({"priority": priority} if priority else {}),
            "affinity": {"compute_pool": tags.get(TAG_COMPUTE_POOL) or None},
            **({"ttl_days": int(tags[TAG_TTL])} if tags.get(TAG_TTL, "").isdigit() else {}),
        }
    )


def _resources(own: Resources, pool: Pool) -> dict[str, dict[str, str]]:
    cpu = own.cpu if own.cpu is not None else pool.default_cpu
    mem = own.mem if own.mem is not None else pool.default_mem
    gpu = own.gpu if own.gpu is not None else pool.default_gpu
    amounts = {"cpu": _cpu_quantity(cpu), "memory": _mem_quantity(mem)}
    if gpu:
        amounts["nvidia.com/gpu"] = str(gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _cpu_quantity(cpu: float) -> str:
    millis = round(cpu * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _mem_quantity(mem: int) -> str:
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if mem % size == 0:
            return f"{mem // size}{unit}"
    return str(mem)


def _labels(spec: DagSpec, node: Node, pool: Pool, params: RuntimeParams | None) -> dict[str, str]:
    team = spec.labels.get("team") or spec.labels.get("owner")
    if params is not None:
        team = params.labels.get("team") or params.labels.get("owner") or team
    labels = {
        "pipeline": spec.pipeline_id,
        "node": node.id,
        "pool": pool.name,
        **({"team": team} if team else {}),
        **({"submission": params.submission_id} if params is not None else {}),
    }
    return {LABEL_PREFIX + k: _label_value(v) for k, v in labels.items()}


def _label_value(value: str) -> str:
    """Label values: 63 chars of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    return _LABEL_VALUE.sub("_", value)[:63].strip("_.-")


# The audit trail's signing key (a Secret): mounted only in platform steps (promotion gates,
# lake maintenance), never in a step running a team's code.
AUDIT_SECRET = "quantos-audit"


def with_audit_key(op_tags: Mapping[str, Any]) -> dict[str, Any]:
    """`op_tags` whose k8s step config also mounts the audit key's Secret (staging/prod steps;
    ignored in process, where the step reads the key as the gateway does)."""
    k8s = dict(op_tags.get(K8S_CONFIG_TAG) or {})
    container = dict(k8s.get("container_config") or {})
    container["env_from"] = [*container.get("env_from", []), {"secret_ref": {"name": AUDIT_SECRET}}]
    return {**op_tags, K8S_CONFIG_TAG: {**k8s, "container_config": container}}
