"""The pod an image-only python_task runs as: what PipesK8sClient.run is given, and its preview.

The runner (`kinds/python_pod.py`) hands `PipesPod`'s fields to `PipesK8sClient.run`, which
builds the Pod with dagster-k8s's `build_pod_body`. `pipes_pod_manifest` calls that same
function with the same fields, so `quantos manifests` and the tests see the body the client
would POST (only the Pipes bootstrap env, which needs a live run, is left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantos_assets.k8s.step_config import node_k8s_config, op_name, pipes_pod_base
from quantos_assets.placement import Pool
from quantos_assets.spec.models import DagSpec, Node, RuntimeParams


@dataclass(frozen=True)
class PipesPod:
    image: str
    base_pod_meta: dict[str, Any]
    base_pod_spec: dict[str, Any]
    # The node's own env; data locations travel as Pipes extras, secrets as envFrom.
    env: dict[str, str] = field(default_factory=dict)


def pipes_pod(
    spec: DagSpec, node: Node, params: RuntimeParams | None, pools: dict[str, Pool] | None = None
) -> PipesPod:
    """Placement, hardening, secret scopes and labels from the one function the step Job uses."""
    if not node.image:
        raise ValueError(f"{spec.pipeline_id}.{node.id}: no image to run as a pod")
    meta, pod_spec = pipes_pod_base(node_k8s_config(spec, node, params, pools))
    return PipesPod(
        image=node.image, base_pod_meta=meta, base_pod_spec=pod_spec, env=dict(node.env)
    )


def pipes_pod_manifest(
    spec: DagSpec,
    node: Node,
    params: RuntimeParams | None = None,
    run_id: str = "preview",
    env_vars: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Pod body (camelCase, as POSTed) built by dagster-k8s's own `build_pod_body`."""
    from dagster_k8s.pipes import build_pod_body, get_pod_name
    from kubernetes.client import ApiClient

    pod = pipes_pod(spec, node, params)
    body = build_pod_body(
        pod_name=get_pod_name(run_id, op_name(spec, node)),
        image=pod.image,
        command=None,
        env_vars={**pod.env, **(env_vars or {})},
        base_pod_meta=pod.base_pod_meta,
        base_pod_spec=pod.base_pod_spec,
    )
    # create_namespaced_pod sends the body without these; a file for kubectl needs them.
    return {"apiVersion": "v1", "kind": "Pod", **ApiClient().sanitize_for_serialization(body)}
