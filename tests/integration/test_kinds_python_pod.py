"""Image-only python_task as its own pod through PipesK8sClient, without a cluster.

- the Pod body comes from dagster-k8s's own `build_pod_body` and is validated strictly against
  the Kubernetes schema; it carries the step pod's pool, resources, hardening and secret scopes;
- a kubeconfig pointing at a closed port on 127.0.0.1: the step fails with one line naming the
  endpoint;
- a stand-in Kubernetes API on loopback (pods create/list/log/delete, ~80 lines): the real
  PipesK8sClient POSTs the pod, the "kubelet" runs the container's process locally with the
  pod's env and its envFrom Secrets, which reads its input from and writes its output to a real
  S3 server (moto), and Pipes messages come back through the pod log.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import kubernetes_validate
import pyarrow as pa
import pytest
import yaml
from dagster import DagsterInstance, PipesSubprocessClient, materialize
from moto_s3 import s3_server
from profiles import LOCAL, prod_profile

from quantos_assets.k8s.manifests import step_job_manifests
from quantos_assets.k8s.pipes_pod import pipes_pod_manifest
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.run_tags import runtime_run_tags
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec.models import RuntimeParams
from quantos_assets.spec_rules.firm import load_spec
from resources.artifact_store import ArtifactStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"
SEED = REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml"
PARAMS = REPO / "tests" / "fixtures" / "seed_runtime_params.json"
IMAGE = "ghcr.io/archetype/feature-kit:0.3.2"
BUCKET = "quantos-artifacts"
REGION = "us-east-1"
PIPES_ENV = {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"}

# Two nodes: bars from an entrypoint (subprocess, as locally), then the image-only node.
SPEC = f"""
version: 1
pipeline_id: pod_demo
labels: {{owner: research}}
slo: {{priority: normal, qos: on_demand}}
nodes:
  - id: bars
    kind: python_task
    params: {{entrypoint: "tests.integration.test_kinds_entrypoints:echo_env"}}
    outs: [bars]
  - id: features
    kind: python_task
    image: "{IMAGE}"
    env: {{FEATURE_VIEW: xs_v2}}
    params: {{factor: 3}}
    resources: {{cpu: "2", mem: "4Gi"}}
    ins: [bars]
    outs: [features]
"""
GPU_SPEC = f"""
version: 1
pipeline_id: pod_gpu
slo: {{priority: critical, qos: on_demand}}
nodes:
  - id: score
    kind: python_task
    image: "{IMAGE}"
    resources: {{gpu: 2, cpu: "8", mem: "32Gi"}}
    outs: [scores]
"""
# What the image does: read the input named in the extras, write the out, log through Pipes.
CONTAINER = """
import io, os
import boto3, pyarrow as pa, pyarrow.parquet as pq
from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    x = pipes.extras
    s3 = boto3.client("s3", endpoint_url=x["s3"]["endpoint_url"], region_name=x["s3"]["region"])
    def split(uri):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket, key
    bucket, key = split(x["inputs"]["bars"]["uri"])
    bars = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    out = pa.table({"view": bars["view"], "factor": [x["params"]["factor"]] * bars.num_rows,
                    "env_view": [os.environ["FEATURE_VIEW"]] * bars.num_rows})
    buf = io.BytesIO()
    pq.write_table(out, buf)
    bucket, key = split(x["outputs"]["features"]["parquet"])
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    pipes.log.info(f"pod wrote {out.num_rows} rows for {x['outs']} session={x['session']}")
"""


def _write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _params(**changes: Any) -> RuntimeParams:
    return RuntimeParams.model_validate({**json.loads(PARAMS.read_text()), **changes})


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "quantos"}}
        ],
        "current-context": "x",
    }
    return _write(tmp_path, yaml.safe_dump(config), "kubeconfig")


# --- the Pod body, from dagster-k8s ---------------------------------------------------------
def test_pod_body_validates_and_is_placed_hardened_and_scoped() -> None:
    spec = load_spec(SEED).spec
    pod = pipes_pod_manifest(spec, spec.node("compute_features"), load_runtime_params(PARAMS))
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    body, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["image"] == IMAGE and "command" not in container  # the image's own entrypoint
    assert container["env"] == [{"name": "FEATURE_VIEW", "value": "xs_v2"}]
    # high priority moves the spot_ok batch node to on-demand cpu, the gpu affinity does not apply
    assert (
        body["nodeSelector"] == {"quantos.io/pool": "cpu"}
        and body["priorityClassName"] == "quantos-high"
    )
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"cpu": "4", "memory": "16Gi"},
    }
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == [
        "quantos-scope-binance-readonly",
        "quantos-scope-s3-lake-ro",
    ]
    sc = container["securityContext"]
    assert (
        sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["readOnlyRootFilesystem"]
    )
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    assert body["securityContext"]["runAsUser"] == 10001 and body["securityContext"]["runAsNonRoot"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in body["volumes"]
    assert body["automountServiceAccountToken"] is False and body["restartPolicy"] == "Never"
    labels = pod["metadata"]["labels"]
    assert (
        labels["quantos.io/team"] == "research"
        and labels["quantos.io/submission"] == "sub-2025-10-29-001"
    )
    assert labels["quantos.io/node"] == "compute_features" and labels["quantos.io/pool"] == "cpu"


def test_gpu_pod_without_submission_has_gpus_pool_and_no_secrets(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GPU_SPEC, "gpu.yaml")).spec
    pod = pipes_pod_manifest(spec, spec.node("score"))
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    body, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
    assert body["nodeSelector"] == {"quantos.io/pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in body[
        "tolerations"
    ]
    assert body["priorityClassName"] == "quantos-critical"
    assert "envFrom" not in container and "quantos.io/submission" not in pod["metadata"]["labels"]


def test_pod_and_its_launcher_step_share_the_hardening_not_the_placement() -> None:
    """One function builds both: same security contexts, /tmp volume and labels; the pod
    gets the node's pool, resources and secret scopes, the launching step a small on-demand
    slot without secrets."""
    pipeline = build_pipeline(load_spec(SEED), prod_profile())
    params = load_runtime_params(PARAMS)
    step = step_job_manifests(pipeline, params)["bt_xs_bilstm_v1__compute_features"]["spec"][
        "template"
    ]["spec"]
    pod = pipes_pod_manifest(pipeline.spec, pipeline.spec.node("compute_features"), params)["spec"]
    for key in ("securityContext", "volumes"):
        assert pod[key] == step[key], key
    step_c, pod_c = step["containers"][0], pod["containers"][0]
    for key in ("securityContext", "volumeMounts"):
        assert pod_c[key] == step_c[key], key
    assert pod_c["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert step_c["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert pod_c["envFrom"] and not step_c.get("envFrom")
    # the step launches the pod, so it alone gets an API token
    assert (
        step["automountServiceAccountToken"] is True
        and pod["automountServiceAccountToken"] is False
    )


# --- up to the wire ---------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _materialize(
    spec_path: Path, s3_store: ArtifactStore, client: Any, params: RuntimeParams | None = None
) -> Any:
    from dagster_k8s import PipesK8sClient  # noqa: F401  (the resource the profile binds)

    # built for prod: an image-only task's step launches its pod
    pipeline = build_pipeline(load_spec(spec_path), prod_profile())
    instance = DagsterInstance.ephemeral()
    result = materialize(
        pipeline.assets,
        resources={
            "pipes_subprocess_client": PipesSubprocessClient(),
            "pipes_k8s_client": client,
            "artifact_store": s3_store,
        },
        tags=runtime_run_tags(params) if params else None,
        instance=instance,
        raise_on_error=False,
    )
    _INSTANCES[result.run_id] = instance
    return result


_INSTANCES: dict[str, Any] = {}


def _instance(result: Any) -> Any:
    return _INSTANCES[result.run_id]


def _failure(result: Any) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1
    data = failures[0].step_failure_data
    return (
        data.user_failure_data.description if data.user_failure_data else data.error.message
    ).strip()


def _profile_client(monkeypatch: pytest.MonkeyPatch, kubeconfig: Path) -> Any:
    """The PipesK8sClient the prod profile binds, with its kubeconfig at `kubeconfig`."""
    from resources.profile import build_resources

    # in a pod, the in-cluster config would win over the kubeconfig
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return build_resources(prod_profile(KUBECONFIG=str(kubeconfig)))["pipes_k8s_client"]


def test_unreachable_api_server_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_store: ArtifactStore
) -> None:
    port = _closed_port()
    client = _profile_client(monkeypatch, _kubeconfig(tmp_path, f"https://127.0.0.1:{port}"))
    result = _materialize(_write(tmp_path, SPEC, "pod_demo.yaml"), s3_store, client)
    assert not result.success
    message = _failure(result)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(
        f"pod_demo.features: pod for image '{IMAGE}' not created: Kubernetes API "
        f"https://127.0.0.1:{port} unreachable ("
    ), message


def test_no_cluster_configured_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_store: ArtifactStore
) -> None:
    client = _profile_client(monkeypatch, tmp_path / "missing-kubeconfig")
    message = _failure(_materialize(_write(tmp_path, SPEC, "pod_demo.yaml"), s3_store, client))
    assert message.startswith(
        f"pod_demo.features: pod for image '{IMAGE}' not created: no Kubernetes cluster "
        "configured ("
    ), message
    assert "\n" not in message


class FakeKubernetes(ThreadingHTTPServer):
    """Just enough of the pods API for PipesK8sClient; a 'kubelet' runs the container locally."""

    def __init__(
        self, secrets: dict[str, dict[str, str]], program: str, base_env: dict[str, str]
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.secrets, self.program, self.base_env = secrets, program, base_env
        self.created: list[dict[str, Any]] = []
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, bytes] = {}
        self.deleted: list[str] = []

    def run_pod(self, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        env = dict(self.base_env)
        for source in container.get("envFrom", []):
            env.update(
                self.secrets[source["secretRef"]["name"]]
            )  # a missing Secret would fail the pod
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        proc = subprocess.run(
            [sys.executable, "-c", self.program],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        # Like the kubelet's `timestamps=true`: one distinct RFC 3339 stamp per line.
        start = datetime.now(UTC).replace(microsecond=0)
        lines = (proc.stdout + proc.stderr).decode().splitlines()
        self.logs[pod["metadata"]["name"]] = "".join(
            f"{(start + timedelta(microseconds=i)).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} {line}\n"
            for i, line in enumerate(lines, 1)
        ).encode()
        terminated = {
            "exitCode": proc.returncode,
            "reason": "Completed" if proc.returncode == 0 else "Error",
        }
        pod["status"] = {
            "phase": "Succeeded" if proc.returncode == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container["name"],
                    "ready": False,
                    "restartCount": 0,
                    "image": container["image"],
                    "imageID": "",
                    "state": {"terminated": terminated},
                }
            ],
        }


class _Handler(BaseHTTPRequestHandler):
    server: FakeKubernetes

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        pod = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.created.append({"path": self.path, "body": json.loads(json.dumps(pod))})
        self.server.pods[pod["metadata"]["name"]] = pod
        self.server.run_pod(pod)
        self._send(201, json.dumps(pod).encode())

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.endswith("/log"):
            log = self.server.logs[url.path.split("/")[-2]]
            if parse_qs(url.query).get("timestamps", [""])[0].lower() != "true":
                log = b"".join(line.partition(b" ")[2] for line in log.splitlines(keepends=True))
            self._send(200, log, "text/plain")
            return
        selector = parse_qs(url.query).get("fieldSelector", [""])[0]
        name = selector.removeprefix("metadata.name=")
        items = [self.server.pods[name]] if name in self.server.pods else []
        self._send(
            200,
            json.dumps(
                {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
            ).encode(),
        )

    def do_DELETE(self) -> None:
        name = urlparse(self.path).path.split("/")[-1]
        self.server.deleted.append(name)
        self._send(200, json.dumps(self.server.pods.pop(name)).encode())


@pytest.fixture
def fake_k8s(s3_endpoint: str) -> Iterator[FakeKubernetes]:
    secrets = {
        "quantos-scope-s3-lake-rw": {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
        "quantos-scope-binance-readonly": {"BINANCE_KEY": "k"},
    }
    # The container sees only what the pod gives it (env, envFrom) and a bare system env.
    base_env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": str(REPO)}
    server = FakeKubernetes(secrets, CONTAINER, base_env)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_pod_runs_through_the_kubernetes_api_and_s3(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_store: ArtifactStore,
    fake_k8s: FakeKubernetes,
) -> None:
    from dagster_k8s import PipesK8sClient

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    host, port = "127.0.0.1", fake_k8s.server_port  # FakeKubernetes binds loopback
    kubeconfig = _kubeconfig(tmp_path, f"http://{host}:{port}")
    params = _params(secrets_scope=["s3-lake-rw", "binance-readonly"], affinity={})
    spec_path = _write(tmp_path, SPEC, "pod_demo.yaml")
    client = PipesK8sClient(kubeconfig_file=str(kubeconfig), poll_interval=0.05)
    result = _materialize(spec_path, s3_store, client, params)
    assert result.success, [
        e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ]

    # the value the image wrote to S3 came back as the node's output
    features = result.output_for_node("pod_demo__features", "pod_demo__features")
    assert isinstance(features, pa.Table)
    assert features.to_pydict() == {"view": [""], "factor": [3], "env_view": ["xs_v2"]}
    # Pipes messages from the pod log reached the run's event log
    records = _instance(result).all_logs(result.run_id)
    assert "pod wrote 1 rows for ['features'] session=None" in [r.user_message for r in records]

    # exactly one pod created, in the kubeconfig's namespace, then deleted
    assert (
        len(fake_k8s.created) == 1
        and fake_k8s.created[0]["path"] == "/api/v1/namespaces/quantos/pods"
    )
    sent = fake_k8s.created[0]["body"]
    assert fake_k8s.deleted == [sent["metadata"]["name"]]
    # the body on the wire is the preview's body (same build_pod_body, same inputs) + Pipes
    # bootstrap env
    spec = load_spec(spec_path).spec
    preview = pipes_pod_manifest(spec, spec.node("features"), params)
    container = sent["spec"]["containers"][0]
    assert {e["name"] for e in container["env"]} == {"FEATURE_VIEW"} | PIPES_ENV
    container["env"] = [e for e in container["env"] if e["name"] not in PIPES_ENV]
    for doc in (sent, preview):
        doc["metadata"].pop("name")
    assert sent == {k: v for k, v in preview.items() if k not in ("apiVersion", "kind")}
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", **sent}, K8S_VERSION, strict=True
    )
    # the input was staged on S3 under the run, where the pod read it
    s3 = boto3.client("s3", endpoint_url=s3_store.endpoint_url, region_name=REGION)
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{tmp_path.name}/pipes/")["Contents"]
    ]
    assert any(k.endswith("/pod_demo__features/in/bars.parquet") for k in keys)
    assert any(k.endswith("/pod_demo__features/out/features.parquet") for k in keys)


def test_failing_pod_is_one_line_with_its_last_log_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_store: ArtifactStore,
    fake_k8s: FakeKubernetes,
) -> None:
    from dagster_k8s import PipesK8sClient

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    fake_k8s.program = (
        "import sys; print('feature view xs_v2 missing', file=sys.stderr); sys.exit(3)"
    )
    host, port = "127.0.0.1", fake_k8s.server_port  # FakeKubernetes binds loopback
    client = PipesK8sClient(
        kubeconfig_file=str(_kubeconfig(tmp_path, f"http://{host}:{port}")), poll_interval=0.05
    )
    message = _failure(_materialize(_write(tmp_path, SPEC, "pod_demo.yaml"), s3_store, client))
    assert "\n" not in message
    assert message.startswith(
        f"pod_demo.features: pod for image '{IMAGE}' failed on http://{host}:{port}: pod dagster-"
    ), message
    assert message.endswith(
        "container dagster-pipes-execution failed: feature view xs_v2 missing"
    ), message
    assert fake_k8s.deleted  # the failed pod is cleaned up


def test_local_profile_refuses_an_unmapped_image_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_store: ArtifactStore
) -> None:
    """Locally no pod: an image-only task runs as its deploy/local_images.yaml entry (none
    here), and nothing is staged in the store."""
    unmapped = "ghcr.io/archetype/unmapped-kit:1.0"
    pipeline = build_pipeline(
        load_spec(_write(tmp_path, SPEC.replace(IMAGE, unmapped), "pod_demo.yaml")), LOCAL
    )
    result = materialize(
        pipeline.assets,
        resources={"pipes_subprocess_client": PipesSubprocessClient(), "artifact_store": s3_store},
        raise_on_error=False,
    )
    assert _failure(result) == (
        f"pod_demo.features: image '{unmapped}' has no local entrypoint in "
        "deploy/local_images.yaml; list it there to run it on the embedded default, or run on "
        "staging/prod, where the image runs as its own pod"
    )
    s3 = boto3.client("s3", endpoint_url=s3_store.endpoint_url, region_name=REGION)
    assert "Contents" not in s3.list_objects_v2(
        Bucket=BUCKET, Prefix=f"{tmp_path.name}/"
    )  # nothing staged


# --- S3 on loopback ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def s3_store(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ArtifactStore:
    """A store of its own per test (a prefix named after the test's tmp dir)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return ArtifactStore(
        root=f"s3://{BUCKET}/{tmp_path.name}", endpoint_url=s3_endpoint, region=REGION
    )
