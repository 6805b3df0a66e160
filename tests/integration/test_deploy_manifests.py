"""Everything under deploy/ that a cluster will receive, checked before it gets there.

Core kinds are validated in strict mode against the Kubernetes OpenAPI schema; the operator
CRDs (KEDA, KubeRay) are not in that schema, so their pod templates are validated as Pods and
their references checked against deploy/pools.yaml.
"""
from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from quantos_assets.placement import load_pools

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.33.0"
CRD_KINDS = {"ScaledObject", "RayCluster"}


def _docs() -> list[tuple[str, dict]]:
    out = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        out.extend((f"{f.name}#{i}", d) for i, d in enumerate(yaml.safe_load_all(f.read_text())) if d)
    return out


@pytest.mark.parametrize(("where", "doc"), _docs(), ids=[w for w, _ in _docs()])
def test_deploy_manifest_validates(where: str, doc: dict) -> None:
    if doc["kind"] not in CRD_KINDS:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return
    if doc["kind"] == "RayCluster":
        spec = doc["spec"]
        templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
        for template in templates:
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": template["spec"]}
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    else:
        trigger = doc["spec"]["triggers"][0]
        assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == "orch.jobs"


def test_every_priority_class_named_by_the_pools_exists() -> None:
    defined = {d["metadata"]["name"] for _, d in _docs() if d["kind"] == "PriorityClass"}
    named = set()
    for pool in load_pools(str(DEPLOY / "pools.yaml")).values():
        named.add(pool.priority_class)
        named.update(dict(pool.urgent_priority_classes).values())
    assert named <= defined, named - defined


def test_helm_values_match_the_prod_instance() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    prod = yaml.safe_load((DEPLOY / "dagster.prod.yaml").read_text())
    helm_limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert helm_limits == prod["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert values["runLauncher"]["type"] == prod["run_launcher"]["class"]
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] and values["dagsterDaemon"]["runRetries"]["enabled"]


def test_only_the_gateway_and_the_sso_proxy_reach_the_webserver() -> None:
    """Dagster's GraphQL has no authentication: the cluster must not let anything else in."""
    policies = [d for _, d in _docs() if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"]["matchLabels"].get("component") == "dagster-webserver"]
    assert len(policies) == 1
    ingress = policies[0]["spec"]["ingress"]
    allowed = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for rule in ingress for p in rule["from"]}
    assert allowed == {"quantos-gateway", "oauth2-proxy"}
    assert all("namespaceSelector" not in p and "ipBlock" not in p for rule in ingress for p in rule["from"])
    gateway = next(d for _, d in _docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == "quantos-gateway")
    pod = gateway["spec"]["template"]["spec"]
    assert gateway["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] in allowed
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    assert all(c["securityContext"]["allowPrivilegeEscalation"] is False for c in pod["containers"])


def _image_paths() -> set[str]:
    """Repository paths the user-code image holds (COPY in the build stage, /app copied whole)."""
    copied: set[str] = set()
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            *sources, dest = parts[1:]
            copied.update(sources if dest in ("./", ".") else [dest])
    return copied


def _in_image(path: str) -> bool:
    return any(path == c or path.startswith(c.rstrip("/") + "/") for c in _image_paths())


def test_the_image_holds_every_file_its_defaults_name() -> None:
    """The gateway's default teams file, and each /app path the image's ENV sets."""
    from quantos_assets.gateway.settings import gateway_settings
    from resources.profile import REPO_ROOT

    teams = gateway_settings({"QUANTOS_ENV": "local"}).teams_path.relative_to(REPO_ROOT).as_posix()
    assert _in_image(teams), f"{teams} (the gateway's default QUANTOS_TEAMS) is not copied into the image"
    env_paths = re.findall(r"QUANTOS_\w+=/app/(\S+)", (DEPLOY / "Dockerfile").read_text())
    assert env_paths and all(_in_image(p) for p in env_paths), [p for p in env_paths if not _in_image(p)]
