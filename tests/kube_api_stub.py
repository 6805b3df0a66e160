"""A Kubernetes API on loopback that accepts Job creations and keeps their bodies: the run
launcher of deploy/dagster.prod.yaml, built by Dagster from that file's own section, sends it
a run's Job through the kubernetes client exactly as it would send a cluster. Nothing else of
the API is served (a request for anything else gets 404)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from loopback_http import QuietHandler, serve_http

if TYPE_CHECKING:
    from dagster_k8s import K8sRunLauncher

REPO = Path(__file__).resolve().parents[1]
PROD_YAML = REPO / "deploy" / "dagster.prod.yaml"
NAMESPACE = "quantos"  # QUANTOS_K8S_NAMESPACE, as the Helm values' job_namespace
_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs$")


@dataclass
class KubeApi:
    url: str
    kubeconfig: Path
    jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (namespace, body)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def created(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.jobs)


@contextmanager
def kube_api(tmp: Path) -> Iterator[KubeApi]:
    """The API on a free port and a kubeconfig naming it (a token that is never checked)."""
    found: list[KubeApi] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = _JOBS.match(self.path.split("?", 1)[0])
            if match is None:
                self.send_error(404)
                return
            job = json.loads(body)
            with found[0].lock:
                found[0].jobs.append((match.group(1), job))
            answer = json.dumps(job).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with serve_http(Handler) as url:
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "c",
                    "clusters": [{"name": "c", "cluster": {"server": url}}],
                    "users": [{"name": "u", "user": {"token": "x"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                }
            )
        )
        found.append(KubeApi(url, kubeconfig))
        yield found[0]


def prod_run_launcher(api: KubeApi, **overrides: Any) -> K8sRunLauncher:
    """The run launcher of deploy/dagster.prod.yaml as Dagster builds it from that section
    (module, class, config checked against the class's schema), talking to `api` instead of
    the cluster it runs in; `overrides` are added to its config (the Helm values' env_secrets,
    say). Call register_instance on it before launching."""
    from dagster._serdes import ConfigurableClassData
    from dagster_k8s import K8sRunLauncher

    section = yaml.safe_load(PROD_YAML.read_text())["run_launcher"]
    config = {
        **section["config"],
        "job_namespace": NAMESPACE,
        "load_incluster_config": False,
        "kubeconfig_file": str(api.kubeconfig),
        **overrides,
    }
    data = ConfigurableClassData(section["module"], section["class"], yaml.safe_dump(config))
    return data.rehydrate(as_type=K8sRunLauncher)  # a K8sRunLauncher, or it fails here
