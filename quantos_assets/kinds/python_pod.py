"""python_task with only an `image`: the image runs as its own Kubernetes pod through dagster-pipes.

Production only (seed 000 §4/§5): the step launches the pod with `PipesK8sClient.run`, placed
and hardened exactly like a step pod (`k8s/pipes_pod.py`), with the secret scopes and labels
of the run's submission (from its tags). Contract with the image (docs/user-guide.md):

    Pipes extras  params   the node's params (JSON values)
                  outs     the node's out names
                  inputs   {name: {"uri": "s3://…/in/<name>.parquet|.bin",
                                   "format": "parquet"|"bytes"}}
                  outputs  {out: {"parquet": "s3://…/out/<out>.parquet",
                                  "bytes": "s3://…/out/<out>.bin"}}
                  s3       {"endpoint_url": …, "region": …} of the artifact store
                  session  the exchange session of a session-partitioned run, else null

The image reads its inputs and writes ONE of the two URIs per out (Parquet: a table that goes
to Iceberg; bytes: an artifact). Logs, custom messages and materialization metadata go back
through Pipes messages on the pod's stderr, which the client reads from the pod log.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pyarrow.parquet as pq
from dagster import AssetExecutionContext

from quantos_assets.k8s.pipes_pod import pipes_pod
from quantos_assets.k8s.step_config import SecretScopeError, params_from_run_tags
from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue, resource
from quantos_assets.kinds.python_task import _jsonable
from quantos_assets.placement import PlacementError
from resources.artifact import Artifact

STAGING_PREFIX = "pipes"


class PythonPodRunner:
    required_resource_keys = frozenset({"pipes_k8s_client", "artifact_store"})

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        node = run.node
        image = str(node.image)
        try:
            pod = pipes_pod(run.spec, node, params_from_run_tags(context.run.tags))
        except (PlacementError, SecretScopeError) as err:
            raise NodeRunError(f"{run.label}: {err}") from None
        store = resource(context, "artifact_store")
        prefix = f"{STAGING_PREFIX}/{context.run_id}/{context.op.name}"
        outputs: dict[str, dict[str, str]] = {
            out: {
                "parquet": store.uri_for(f"{prefix}/out/{out}.parquet"),
                "bytes": store.uri_for(f"{prefix}/out/{out}.bin"),
            }
            for out in node.outs
        }
        extras = {
            "params": _jsonable(dict(node.params), run.label),
            "outs": list(node.outs),
            "inputs": _stage_inputs(store, f"{prefix}/in", run.inputs),
            "outputs": outputs,
            "s3": {"endpoint_url": store.endpoint_url, "region": store.region},
            # As for entrypoint tasks: the session of a session-partitioned run (else null).
            "session": run.session,
            # A data-arrival run's object: {"uri", "version"} (else null).
            "arrival": run.arrival.as_extra() if run.arrival else None,
        }
        client = resource(context, "pipes_k8s_client")
        try:
            client.run(
                context=context,
                image=pod.image,
                extras=extras,
                env=pod.env,
                base_pod_meta=pod.base_pod_meta,
                base_pod_spec=pod.base_pod_spec,
                **(
                    {"pod_wait_timeout": float(run.spec.slo.max_runtime)}
                    if run.spec.slo.max_runtime
                    else {}
                ),
            )
        except Exception as err:  # noqa: BLE001 - kubernetes, urllib3 and dagster-k8s each raise their own
            raise _pod_error(run.label, image, err) from None
        return {out: _read_out(store, outputs[out], run.label, out) for out in node.outs}


def _stage_inputs(
    store: Any, prefix: str, inputs: dict[str, NodeValue]
) -> dict[str, dict[str, str]]:
    """Inputs to the object store, where the pod (on another node) can read them."""
    refs: dict[str, dict[str, str]] = {}
    for name, value in inputs.items():
        if isinstance(value, Artifact):
            refs[name] = {"uri": store.put(f"{prefix}/{name}.bin", value.data), "format": "bytes"}
        else:
            buf = io.BytesIO()
            pq.write_table(value, buf, compression="zstd")
            refs[name] = {
                "uri": store.put(f"{prefix}/{name}.parquet", buf.getvalue()),
                "format": "parquet",
            }
    return refs


def _read_out(store: Any, uris: dict[str, str], label: str, out: str) -> NodeValue:
    if store.exists(uris["parquet"]):
        return pq.read_table(io.BytesIO(store.get(uris["parquet"])))
    if store.exists(uris["bytes"]):
        return Artifact(data=store.get(uris["bytes"]), role="file", filename=f"{out}.bin")
    raise NodeRunError(
        f"{label}: the pod wrote no value for out '{out}' (expected {uris['parquet']} or .bin)"
    )


def _pod_error(label: str, image: str, err: Exception) -> NodeRunError:
    """One line naming the cluster endpoint and what went wrong; retryable if it may pass."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    what = f"{label}: pod for image '{image}'"
    if isinstance(err, ConfigException):
        return NodeRunError(
            f"{what} not created: no Kubernetes cluster configured ({_first_line(err)})"
        )
    endpoint = _api_endpoint()
    if isinstance(err, HTTPError):  # connection refused, DNS, TLS, timeouts
        reason = getattr(err, "reason", None) or err
        return NodeRunError(
            f"{what} not created: Kubernetes API {endpoint} unreachable ({_first_line(reason)})",
            retryable=True,
        )
    if isinstance(err, ApiException):
        return NodeRunError(
            f"{what} rejected by Kubernetes API {endpoint}: {err.status} "
            f"{err.reason}{_api_message(err)}",
            retryable=err.status in (429, 500, 502, 503, 504),
        )
    return NodeRunError(f"{what} failed on {endpoint}: {_pod_failure(str(err))}", retryable=True)


_CONTAINER_FAILED = re.compile(
    r'Container "([^"]+)" failed with message: "(.*?)"\. Last \d+ log lines: "(.*)"', re.DOTALL
)
_POD_NAME = re.compile(r"Pod (\S+) ")


def _pod_failure(text: str) -> str:
    """dagster-k8s's multi-line pod error, cut to: pod, container, the last line it logged."""
    found = _CONTAINER_FAILED.search(text)
    if not found:
        return _first_line(text)
    container, message, logs = found.groups()
    lines = [ln for ln in logs.splitlines() if ln.strip() and '"__dagster_pipes_version"' not in ln]
    last = lines[-1].strip() if lines else (message if message != "None" else "no log output")
    pod = _POD_NAME.search(text)
    return _first_line(
        f"{'pod ' + pod.group(1) + ' ' if pod else ''}container {container} failed: {last}"
    )


def _api_endpoint() -> str:
    from kubernetes.client import Configuration

    return Configuration.get_default_copy().host or "(unknown endpoint)"


def _api_message(err: Any) -> str:
    import json

    try:
        message = json.loads(err.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f": {_first_line(message)}" if message else ""


def _first_line(value: object) -> str:
    text = str(value).strip()
    return (text.splitlines()[0] if text else type(value).__name__)[:300]
