"""custom_crd: apply the node's Kubernetes manifest and wait for it to finish.

There is no local stand-in for an arbitrary custom resource, so locally the
manifest is only validated (also at spec-validation time, through
`validate_manifest`) and running it fails with one clear line unless a
cluster is configured.

params:
    manifest     the object: apiVersion, kind, metadata.name, spec
    timeout_sec  how long to wait for a terminal status (default 3600)

Each out receives a JSON report (Artifact role "report") of the final object.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue
from resources.artifact import Artifact
from resources.profile import kube_config_source

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_POLL_SECONDS = 5.0


def validate_manifest(params: Mapping[str, Any]) -> list[str]:
    """Every problem with params.manifest, each naming its field; empty when valid."""
    manifest = params.get("manifest")
    if manifest is None:
        return [
            (
                "params.manifest is required (a Kubernetes object: apiVersion, kind, "
                "metadata.name, spec)"
            )
        ]
    if not isinstance(manifest, Mapping):
        return [f"params.manifest must be a mapping, not {type(manifest).__name__}"]
    errors = [
        f"params.manifest.{key} is required (a non-empty string)"
        for key in ("apiVersion", "kind")
        if not isinstance(manifest.get(key), str) or not manifest.get(key)
    ]
    metadata = manifest.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(metadata, Mapping):
        errors.append("params.manifest.metadata is required (a mapping with name)")
    elif not isinstance(name, str) or not name:
        errors.append("params.manifest.metadata.name is required (a non-empty string)")
    elif not _DNS_SUBDOMAIN.match(name):
        errors.append(
            f"params.manifest.metadata.name '{name}' is not a valid Kubernetes name (lowercase, "
            "digits, '-', '.')"
        )
    if not isinstance(manifest.get("spec"), Mapping):
        errors.append("params.manifest.spec is required (a mapping)")
    return errors


class CustomCrdRunner:
    required_resource_keys: frozenset[str] = frozenset()

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        errors = validate_manifest(run.node.params)
        if errors:
            raise NodeRunError(f"{run.label}: {'; '.join(errors)}")
        manifest = run.node.params["manifest"]
        what = f"{manifest['kind']}/{manifest['metadata']['name']}"
        source = kube_config_source()
        if source is None:
            raise NodeRunError(
                f"{run.label}: custom_crd '{what}' cannot be applied: no Kubernetes cluster is "
                "configured (set KUBECONFIG or run in-cluster)"
            )
        timeout = float(run.node.params.get("timeout_sec", 3600))
        final = _apply_and_wait(context, dict(manifest), source, timeout, run.label, what)
        report = json.dumps(final, indent=2, sort_keys=True, default=str).encode()
        return {
            out: Artifact(data=report, role="report", filename=f"{out}.json")
            for out in run.node.outs
        }


def _apply_and_wait(
    context: AssetExecutionContext,
    manifest: dict[str, Any],
    source: str,
    timeout: float,
    label: str,
    what: str,
) -> dict[str, Any]:
    from kubernetes import client, config, dynamic
    from kubernetes.client.exceptions import ApiException

    if source == "in-cluster":
        config.load_incluster_config()
    else:
        config.load_kube_config(config_file=source)
    api_client = client.ApiClient()
    namespace = manifest["metadata"].get("namespace") or "default"
    name = manifest["metadata"]["name"]
    try:
        api = dynamic.DynamicClient(api_client).resources.get(
            api_version=manifest["apiVersion"], kind=manifest["kind"]
        )
        try:
            api.create(body=manifest, namespace=namespace)
        except ApiException as err:
            if err.status != 409:
                raise
            # A node run is a fresh object: replace the one a previous run left behind.
            api.delete(name=name, namespace=namespace)
            _wait_gone(api, name, namespace)
            api.create(body=manifest, namespace=namespace)
        context.log.info(f"{label}: applied {what} in namespace {namespace}")
        deadline = time.monotonic() + timeout
        while True:
            obj = api.get(name=name, namespace=namespace).to_dict()
            state = terminal_state(obj.get("status") or {})
            if state == "succeeded":
                return obj
            if state == "failed":
                raise NodeRunError(
                    f"{label}: custom_crd '{what}' failed: "
                    f"{json.dumps(obj.get('status'), default=str)[:300]}"
                )
            if time.monotonic() > deadline:
                raise NodeRunError(
                    f"{label}: custom_crd '{what}' did not finish within {timeout:.0f}s",
                    retryable=True,
                )
            time.sleep(_POLL_SECONDS)
    except ApiException as err:
        raise NodeRunError(
            f"{label}: custom_crd '{what}': Kubernetes API {err.status} {err.reason}",
            retryable=True,
        ) from None
    except dynamic.exceptions.ResourceNotFoundError:
        raise NodeRunError(
            f"{label}: custom_crd '{what}': the cluster has no {manifest['apiVersion']} "
            f"{manifest['kind']} (CRD not installed)"
        ) from None


def _wait_gone(api: Any, name: str, namespace: str, timeout: float = 60.0) -> None:
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.get(name=name, namespace=namespace)
        except ApiException as err:
            if err.status == 404:
                return
            raise
        time.sleep(1.0)


def terminal_state(status: Mapping[str, Any]) -> str | None:
    """'succeeded', 'failed' or None (still running), read from the common status shapes."""
    job_status = str(status.get("jobStatus", "")).upper()  # KubeRay RayJob
    if job_status == "SUCCEEDED":
        return "succeeded"
    if (
        job_status in ("FAILED", "STOPPED")
        or str(status.get("jobDeploymentStatus", "")) == "Failed"
    ):
        return "failed"
    phase = str(status.get("phase", "")).lower()
    if phase in ("succeeded", "completed", "complete"):
        return "succeeded"
    if phase in ("failed", "error"):
        return "failed"
    for condition in status.get("conditions") or []:
        if str(condition.get("status")) != "True":
            continue
        if condition.get("type") in ("Failed", "Error"):
            return "failed"
        if condition.get("type") in ("Complete", "Succeeded", "Ready"):
            return "succeeded"
    return None
