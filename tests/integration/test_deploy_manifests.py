"""Everything under deploy/ that a cluster will receive, checked before it gets there.

Core kinds are validated in strict mode against the Kubernetes OpenAPI schema; the operator
CRD (KubeRay) is not in that schema, so its pod templates are validated as Pods.
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
CRD_KINDS = {"RayCluster"}


def _docs() -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        out.extend((f"{f.name}#{i}", d) for i, d in enumerate(yaml.safe_load_all(f.read_text())) if d)
    return out


@pytest.mark.parametrize(("where", "doc"), _docs(), ids=[w for w, _ in _docs()])
def test_deploy_manifest_validates(where: str, doc: dict) -> None:
    if doc["kind"] not in CRD_KINDS:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return
    spec = doc["spec"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for template in templates:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": template["spec"]}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_nothing_scales_a_workload_that_nothing_creates() -> None:
    """A KEDA ScaledObject once scaled a Deployment `quantos-submission-consumer` that no manifest
    or chart creates (the submission queue is consumed by a sensor: docs/decisions.md). Another
    operator kind would also fail the strict schema check above unless added to CRD_KINDS."""
    created = {(d["kind"], d["metadata"]["name"]) for _, d in _docs()}
    created.add(("Deployment", "dagster-dagster-user-deployments-quantos"))  # the Helm chart's
    for where, doc in _docs():
        target = doc.get("spec", {}).get("scaleTargetRef")
        if target:
            assert (target.get("kind", "Deployment"), target["name"]) in created, where


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


def _gateway_pod() -> dict:
    gateway = next(d for _, d in _docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == "quantos-gateway")
    return gateway["spec"]["template"]["spec"]


def _user_code() -> dict:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    return deployment


def _claim_at(path: str, mounts: list[dict], volumes: list[dict]) -> tuple[str, dict]:
    """(PVC claim name, mount) of the volume mounted at `path`."""
    mount = next(m for m in mounts if m["mountPath"] == path)
    volume = next(v for v in volumes if v["name"] == mount["name"])
    return volume["persistentVolumeClaim"]["claimName"], mount


def test_the_gateway_and_the_code_location_share_one_writable_spec_registry() -> None:
    """Inline specs: the gateway writes them where the code location (and its runs) load specs."""
    pod = _gateway_pod()
    [container] = pod["containers"]
    specs_dir = next(e["value"] for e in container["env"] if e["name"] == "QUANTOS_SPECS_DIR")
    claim, mount = _claim_at(specs_dir, container["volumeMounts"], pod["volumes"])
    assert not mount.get("readOnly"), "the gateway registers specs: its registry mount must be writable"
    [pvc] = [d for _, d in _docs() if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]  # gateway replicas and code server on any node

    user = _user_code()
    assert {"name": "QUANTOS_SPECS_DIR", "value": specs_dir} in user["env"]
    assert _claim_at(specs_dir, user["volumeMounts"], user["volumes"])[0] == claim
    assert user["includeConfigInLaunchedRuns"]["enabled"]  # runs and steps load the same specs

    # Seeded from the image's own registry before the code location first loads.
    image_specs = re.search(r"QUANTOS_SPECS_DIR=(\S+)", (DEPLOY / "Dockerfile").read_text())
    assert image_specs is not None
    seed = next(d for _, d in _docs() if d["kind"] == "Job" and d["metadata"]["name"] == "quantos-specs-seed")
    seed_pod = seed["spec"]["template"]["spec"]
    [seeder] = seed_pod["containers"]
    assert _claim_at(specs_dir, seeder["volumeMounts"], seed_pod["volumes"])[0] == claim
    assert f'Path("{image_specs.group(1)}")' in seeder["command"][-1] and f'Path("{specs_dir}")' in seeder["command"][-1]
    assert seeder["image"].rsplit(":", 1)[0] == user["image"]["repository"] == container["image"].rsplit(":", 1)[0]


def test_the_gateway_starts_on_its_manifest_with_secrets_taken_key_by_key() -> None:
    """What the gateway is given is enough for the prod profile, every secret value comes from a
    Secret the Helm values or the deployment guide create, and no Secret is mounted whole."""
    from quantos_assets.gateway.settings import gateway_settings

    pod = _gateway_pod()
    [container] = pod["containers"]
    assert not container.get("envFrom"), "name each key (secretKeyRef): the gateway needs few of them"
    known = {s["name"] for s in _user_code()["envSecrets"]} | {"quantos-gateway-db", "quantos-audit"}
    guide = (DEPLOY.parent / "docs" / "deployment.md").read_text()
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        assert ref["name"] in known and f"| `{ref['name']}` |" in guide, ref
        env[var["name"]] = f"<{ref['name']}/{ref['key']}>"
    settings = gateway_settings(env)  # raises ProfileError naming a variable the prod profile lacks
    assert settings.production and settings.teams_required
    # the audit trail is keyed from a Secret and anchored in S3, or the gateway would not start
    assert settings.audit.key.secret == "<quantos-audit/QUANTOS_AUDIT_KEY>" and (settings.audit.anchor or "").startswith("s3://")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "configMap" in volumes[mounts[str(settings.teams_path.parent)]]
    tokens = volumes[mounts[str(settings.tokens_path.parent)]]
    assert f"| `{tokens['secret']['secretName']}` |" in guide
