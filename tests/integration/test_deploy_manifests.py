"""Everything under deploy/ that a cluster will receive, checked before it gets there.

Core kinds are validated in strict mode against the Kubernetes OpenAPI schema; the operator
CRD (KubeRay) is not in that schema, so a RayCluster is validated against KubeRay's own CRD
schema (tests/fixtures/kuberay/, made strict the same way) and its pod templates as Pods.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from quantos_assets.k8s.ray_driver import RAY_AUTH_KEY, RAY_AUTH_SECRET, RAY_DRIVER_LABEL
from quantos_assets.placement import load_pools
from quantos_assets.tenancy.locations import LocationPlan
from quantos_assets.tenancy.teams import load_teams
from quantos_assets.tenancy.workspace_file import LOCATION_MODULE, helm_deployments, helm_values

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent
K8S_VERSION = "1.33.0"
CRD_KINDS = {"RayCluster"}
KUBERAY_SCHEMA = REPO / "tests" / "fixtures" / "kuberay" / "rayclusters.ray.io.v1.schema.json"


def _docs() -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        out.extend(
            (f"{f.name}#{i}", d) for i, d in enumerate(yaml.safe_load_all(f.read_text())) if d
        )
    return out


def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as kubectl's strict field validation does (the
    CRD itself only prunes them): every object that lists its properties and does not preserve
    unknown fields gets `additionalProperties: false`, like kubernetes-validate's strict mode."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [_strict(s) for s in out[key]]
    return out


@cache
def _raycluster_validator() -> jsonschema.protocols.Validator:
    schema = _strict(json.loads(KUBERAY_SCHEMA.read_text()))
    # OpenAPI v3.0 schemas are draft-4 JSON Schema plus extensions (x-kubernetes-*), which are
    # ignored.
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _crd_errors(doc: dict) -> list[str]:
    errors = sorted(_raycluster_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


@pytest.mark.parametrize(("where", "doc"), _docs(), ids=[w for w, _ in _docs()])
def test_deploy_manifest_validates(where: str, doc: dict) -> None:
    if doc["kind"] not in CRD_KINDS:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return
    assert doc["apiVersion"] == "ray.io/v1", where
    assert _crd_errors(doc) == [], where
    spec = doc["spec"]
    templates = [spec["headGroupSpec"]["template"]] + [
        g["template"] for g in spec["workerGroupSpecs"]
    ]
    for template in templates:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "t"},
            "spec": template["spec"],
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_nothing_scales_a_workload_that_nothing_creates() -> None:
    """A KEDA ScaledObject once scaled a Deployment `quantos-submission-consumer` that no manifest
    or chart creates (the submission queue is consumed by a sensor: docs/decisions.md). Another
    operator kind would also fail the strict schema check above unless added to CRD_KINDS."""
    created = {(d["kind"], d["metadata"]["name"]) for _, d in _docs()}
    created.update(  # the Helm chart's, one per code location
        ("Deployment", f"dagster-dagster-user-deployments-{d['name']}") for d in _user_codes()
    )
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


def test_every_manifest_is_in_a_namespace_our_pods_run_in() -> None:
    """Per-team ResourceQuotas once sat in namespaces no pod of ours ran in, so they limited
    nothing (docs/decisions.md, *Teams share one namespace*). Run and step Jobs (and image-only
    tasks' pods) go to the run launcher's namespace, Ray pods to the RayCluster's: a namespaced
    object anywhere else governs nothing we run."""
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    runs = values["runLauncher"]["config"]["customRunLauncher"]["config"]["job_namespace"]
    ray = {d["metadata"]["namespace"] for _, d in _docs() if d["kind"] == "RayCluster"}
    ours = {runs, *ray}
    assert ours == {"quantos", "compute"}
    elsewhere = {
        w: d["metadata"]["namespace"]
        for w, d in _docs()
        if d["metadata"].get("namespace") not in {None, *ours}
    }
    assert elsewhere == {}


def test_helm_values_match_the_prod_instance() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    prod = yaml.safe_load((DEPLOY / "dagster.prod.yaml").read_text())
    helm_limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"][
        "tagConcurrencyLimits"
    ]
    assert helm_limits == prod["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert (
        values["dagsterDaemon"]["runMonitoring"]["enabled"]
        and values["dagsterDaemon"]["runRetries"]["enabled"]
    )


def test_helm_values_run_the_prod_instances_run_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's instance names the same run launcher class as dagster.prod.yaml, with a
    config that class accepts, and the webserver and the daemon, which import it, run the image
    that has it (docs/decisions.md, *Traces*: the run span on Kubernetes)."""
    from dagster._config import process_config

    from quantos_assets.apps.launcher.k8s_run_launcher import TracedK8sRunLauncher

    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    prod = yaml.safe_load((DEPLOY / "dagster.prod.yaml").read_text())["run_launcher"]
    assert values["runLauncher"]["type"] == "CustomRunLauncher"
    custom = values["runLauncher"]["config"]["customRunLauncher"]
    assert (custom["module"], custom["class"]) == (prod["module"], prod["class"])
    assert (prod["module"], prod["class"]) == (
        TracedK8sRunLauncher.__module__,
        TracedK8sRunLauncher.__name__,
    )
    monkeypatch.setenv("QUANTOS_K8S_NAMESPACE", "quantos")  # dagster.prod.yaml's job_namespace
    for config in (custom["config"], prod["config"]):
        result = process_config(TracedK8sRunLauncher.config_type(), config)
        assert result.success, result.errors
    helm, plain = custom["config"], prod["config"]
    same = ("service_account_name", "dagster_home", "instance_config_map", "image_pull_policy")
    assert {k: helm[k] for k in same} == {k: plain[k] for k in same}
    assert helm["service_account_name"] == values["global"]["serviceAccountName"]
    # the run pod as hardened (non-root, read-only root, no capabilities, /tmp an emptyDir)
    assert helm["run_k8s_config"] == plain["run_k8s_config"]
    user_image = _user_code()["image"]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert values[component]["image"] == user_image, component


def test_helm_values_keep_compute_logs_in_s3_as_the_prod_instance() -> None:
    """The chart renders the same S3 compute log manager as dagster.prod.yaml (bucket aside)."""
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())["computeLogManager"]
    prod = yaml.safe_load((DEPLOY / "dagster.prod.yaml").read_text())["compute_logs"]
    assert values["type"] == prod["class"] == "S3ComputeLogManager"
    assert prod["module"] == "dagster_aws.s3.compute_log_manager"
    helm, config = values["config"]["s3ComputeLogManager"], prod["config"]
    assert config["bucket"] == {"env": "QUANTOS_COMPUTE_LOGS_BUCKET"} and helm["bucket"]
    assert (helm["prefix"], helm["localDir"], helm["uploadInterval"]) == (
        config["prefix"],
        config["local_dir"],
        config["upload_interval"],
    )
    # staged where the pods can write (read-only root file system, /tmp an emptyDir)
    assert config["local_dir"].startswith("/tmp/")
    guide = (REPO / "docs" / "deployment.md").read_text()
    assert "| `QUANTOS_COMPUTE_LOGS_BUCKET` |" in guide, (
        "the guide's environment table lacks the bucket"
    )


def test_only_the_webserver_and_the_daemon_reach_the_code_servers() -> None:
    """A code server's gRPC has no authentication (ReloadCode, snapshots, sensor ticks): no
    team's step pod may reach it, only the two Dagster components that call it, on the port
    the Helm values give every user deployment."""
    policies = [
        d
        for _, d in _docs()
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"]["matchLabels"].get("component") == "user-deployments"
    ]
    assert len(policies) == 1
    (policy,) = policies
    assert policy["metadata"]["namespace"] == "quantos" and policy["spec"]["policyTypes"] == [
        "Ingress"
    ]
    (rule,) = policy["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"] for p in rule["from"]] == [
        {"component": "dagster-webserver"},
        {"component": "dagster-daemon"},
    ]
    assert all(set(p) == {"podSelector"} for p in rule["from"])  # this namespace, no ipBlock
    ports = {d["port"] for d in _user_codes()}
    assert rule["ports"] == [{"protocol": "TCP", "port": port} for port in sorted(ports)]


def test_only_the_gateway_and_the_sso_proxy_reach_the_webserver() -> None:
    """Dagster's GraphQL has no authentication: the cluster must not let anything else in."""
    policies = [
        d
        for _, d in _docs()
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"]["matchLabels"].get("component") == "dagster-webserver"
    ]
    assert len(policies) == 1
    ingress = policies[0]["spec"]["ingress"]
    allowed = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in ingress
        for p in rule["from"]
    }
    assert allowed == {"quantos-gateway", "oauth2-proxy"}
    assert all(
        "namespaceSelector" not in p and "ipBlock" not in p
        for rule in ingress
        for p in rule["from"]
    )
    gateway = next(
        d
        for _, d in _docs()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "quantos-gateway"
    )
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
    from quantos_assets.apps.gateway.settings import gateway_settings
    from resources.profile import REPO_ROOT

    teams = gateway_settings({"QUANTOS_ENV": "local"}).teams_path.relative_to(REPO_ROOT).as_posix()
    assert _in_image(teams), (
        f"{teams} (the gateway's default QUANTOS_TEAMS) is not copied into the image"
    )
    env_paths = re.findall(r"QUANTOS_\w+=/app/(\S+)", (DEPLOY / "Dockerfile").read_text())
    assert env_paths and all(_in_image(p) for p in env_paths), [
        p for p in env_paths if not _in_image(p)
    ]


def _gateway_pod() -> dict:
    gateway = next(
        d
        for _, d in _docs()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "quantos-gateway"
    )
    return gateway["spec"]["template"]["spec"]


def _user_codes() -> list[dict]:
    """The Helm chart's user-code deployments, one per code location."""
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    return list(values["dagster-user-deployments"]["deployments"])


def _user_code() -> dict:
    """The first: every other is a copy of it but for name and args (checked below)."""
    return _user_codes()[0]


def _location_plan() -> LocationPlan:
    return LocationPlan.of(load_teams(DEPLOY / "teams.yaml", required=True))


def test_one_user_code_deployment_per_code_location_each_a_copy_of_the_first() -> None:
    """The workspace has a location per team (workspace.yaml); the cluster needs a code
    server for each, named as the location, loading it by name, hardened alike."""
    plan = _location_plan()
    deployments = _user_codes()
    assert [d["name"] for d in deployments] == plan.names()
    template = {k: v for k, v in deployments[0].items() if k not in {"name", "dagsterApiGrpcArgs"}}
    assert deployments == helm_deployments(plan, template)
    for d in deployments:
        assert d["dagsterApiGrpcArgs"] == ["-m", LOCATION_MODULE, "-a", d["name"]]
        sc = d["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, d["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, d["name"]
        _assert_hardened_container(sc, d["name"])
        assert d["securityContext"] == deployments[0]["securityContext"]
        # a Service is named after it: a DNS-1035 label
        assert len(d["name"]) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", d["name"])


def test_the_committed_helm_values_are_what_the_generator_makes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a change to deploy/teams.yaml (or to the first deployment), regenerate:
    quantos registry workspace --helm deploy/helm/values.yaml --write deploy/helm/values.yaml
    It keeps every other line of the file, its comments included."""
    from quantos_assets.apps.cli.main import main

    committed = (DEPLOY / "helm" / "values.yaml").read_text()
    assert helm_values(committed, _location_plan()) == committed
    monkeypatch.setenv("QUANTOS_TEAMS", str(DEPLOY / "teams.yaml"))
    assert main(["registry", "workspace", "--helm", str(DEPLOY / "helm" / "values.yaml")]) == 0
    assert capsys.readouterr().out == committed


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
    assert not mount.get("readOnly"), (
        "the gateway registers specs: its registry mount must be writable"
    )
    [pvc] = [
        d
        for _, d in _docs()
        if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim
    ]
    assert (
        "ReadWriteMany" in pvc["spec"]["accessModes"]
    )  # gateway replicas and code server on any node

    user = _user_code()
    assert {"name": "QUANTOS_SPECS_DIR", "value": specs_dir} in user["env"]
    assert _claim_at(specs_dir, user["volumeMounts"], user["volumes"])[0] == claim
    assert user["includeConfigInLaunchedRuns"]["enabled"]  # runs and steps load the same specs

    # Seeded from the image's own registry before the code location first loads.
    image_specs = re.search(r"QUANTOS_SPECS_DIR=(\S+)", (DEPLOY / "Dockerfile").read_text())
    assert image_specs is not None
    seed = next(
        d
        for _, d in _docs()
        if d["kind"] == "Job" and d["metadata"]["name"] == "quantos-specs-seed"
    )
    seed_pod = seed["spec"]["template"]["spec"]
    [seeder] = seed_pod["containers"]
    assert _claim_at(specs_dir, seeder["volumeMounts"], seed_pod["volumes"])[0] == claim
    assert (
        f'Path("{image_specs.group(1)}")' in seeder["command"][-1]
        and f'Path("{specs_dir}")' in seeder["command"][-1]
    )
    assert (
        seeder["image"].rsplit(":", 1)[0]
        == user["image"]["repository"]
        == container["image"].rsplit(":", 1)[0]
    )


def test_the_gateway_starts_on_its_manifest_with_secrets_taken_key_by_key() -> None:
    """What the gateway is given is enough for the prod profile, every secret value comes from a
    Secret the Helm values or the deployment guide create, and no Secret is mounted whole."""
    from quantos_assets.apps.gateway.settings import gateway_settings

    pod = _gateway_pod()
    [container] = pod["containers"]
    assert not container.get("envFrom"), (
        "name each key (secretKeyRef): the gateway needs few of them"
    )
    known = {s["name"] for s in _user_code()["envSecrets"]} | {
        "quantos-gateway-db",
        "quantos-audit",
    }
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
    assert settings.cluster.pods and settings.teams_required
    # the audit trail is keyed from a Secret and anchored in S3, or the gateway would not start
    assert settings.audit.key.secret == "<quantos-audit/QUANTOS_AUDIT_KEY>" and (
        settings.audit.anchor or ""
    ).startswith("s3://")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "configMap" in volumes[mounts[str(settings.teams_path.parent)]]
    tokens = volumes[mounts[str(settings.tokens_path.parent)]]
    assert f"| `{tokens['secret']['secretName']}` |" in guide


# --- the Ray cluster (issue 17, item 5): autoscaled, GPU workers, token auth, drivers only ---
def _raycluster() -> dict:
    [cluster] = [d for _, d in _docs() if d["kind"] == "RayCluster"]
    return cluster


def test_the_crd_check_is_strict() -> None:
    """A misspelt field or a value outside an enum fails, as `kubectl apply` would refuse it."""
    cluster = _raycluster()
    typo = {**cluster, "spec": {**cluster["spec"], "enableInTreeAutoscalng": True}}
    assert any("enableInTreeAutoscalng" in e for e in _crd_errors(typo))
    bad_mode = {
        **cluster,
        "spec": {**cluster["spec"], "autoscalerOptions": {"upscalingMode": "Fast"}},
    }
    assert any(e.startswith("spec.autoscalerOptions.upscalingMode") for e in _crd_errors(bad_mode))
    typo_deep = json.loads(json.dumps(cluster))
    typo_deep["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["securityContext"][
        "runAsNonroot"
    ] = True
    assert any("runAsNonroot" in e for e in _crd_errors(typo_deep))
    [group, *_] = cluster["spec"]["workerGroupSpecs"]
    nameless = {
        **cluster,
        "spec": {
            **cluster["spec"],
            "workerGroupSpecs": [{k: v for k, v in group.items() if k != "groupName"}],
        },
    }
    assert any("groupName" in e for e in _crd_errors(nameless))


def test_the_ray_cluster_runs_the_ray_of_uv_lock() -> None:
    """Ray Client needs the same Ray and Python on the driver (the user-code image) and the
    cluster."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    [ray] = [p["version"] for p in lock["package"] if p["name"] == "ray"]
    python = (REPO / ".python-version").read_text().strip().replace(".", "")
    spec = _raycluster()["spec"]
    assert spec["rayVersion"] == ray
    templates = [
        spec["headGroupSpec"]["template"],
        *(g["template"] for g in spec["workerGroupSpecs"]),
    ]
    images = [c["image"] for t in templates for c in t["spec"]["containers"]]
    assert images and all(
        re.fullmatch(rf"rayproject/ray:{re.escape(ray)}-py{python}(-gpu)?", i) for i in images
    ), images


def test_the_ray_cluster_autoscales_a_cpu_and_a_gpu_worker_group() -> None:
    spec = _raycluster()["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    options = spec["autoscalerOptions"]
    assert options["idleTimeoutSeconds"] > 0 and options["upscalingMode"] in (
        "Default",
        "Conservative",
        "Aggressive",
    )
    assert options["resources"]["requests"] and options["resources"]["limits"]
    _assert_hardened_container(options["securityContext"], "autoscaler")
    pools = load_pools(str(DEPLOY / "pools.yaml"))
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for name, group in groups.items():
        assert group["minReplicas"] == 0 and group["maxReplicas"] > 0, name  # scales to zero
        pod = group["template"]["spec"]
        pool = pools[
            name
        ]  # each group sits on the node pool of its name, with its taints tolerated
        assert pod["nodeSelector"] == dict(pool.node_selector), name
        tolerated = {tuple(sorted(t.items())) for t in pod.get("tolerations") or []}
        assert set(pool.tolerations) <= tolerated, name
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == gpu["requests"]["nvidia.com/gpu"] >= 1
    assert groups["gpu"]["rayStartParams"]["num-gpus"] == str(gpu["limits"]["nvidia.com/gpu"])
    assert (
        "nvidia.com/gpu"
        not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    # nothing is scheduled on the head, the pod holding the autoscaler's API credentials
    head = spec["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0" and head["num-gpus"] == "0"


def _assert_hardened_container(sc: dict, where: str) -> None:
    assert sc["allowPrivilegeEscalation"] is False, where
    assert sc["capabilities"] == {"drop": ["ALL"]}, where


def test_every_ray_pod_is_hardened() -> None:
    spec = _raycluster()["spec"]
    templates = {"head": spec["headGroupSpec"]["template"]} | {
        g["groupName"]: g["template"] for g in spec["workerGroupSpecs"]
    }
    for name, template in templates.items():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            _assert_hardened_container(container["securityContext"], f"{name}/{container['name']}")
        if name != "head":  # only the head's autoscaler talks to the Kubernetes API
            assert pod["automountServiceAccountToken"] is False, name
    accounts = {
        d["metadata"]["name"]: d
        for _, d in _docs()
        if d["kind"] == "ServiceAccount" and d["metadata"]["namespace"] == "compute"
    }
    for group in spec["workerGroupSpecs"]:
        assert (
            accounts[group["template"]["spec"]["serviceAccountName"]][
                "automountServiceAccountToken"
            ]
            is False
        )


def test_the_ray_cluster_takes_the_token_the_drivers_are_given() -> None:
    """KubeRay reads `auth_token` from authOptions.secretName; the driver steps mount the Secret of
    the same name in their own namespace (quantos_assets/k8s/ray_driver.py)."""
    cluster = _raycluster()
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": RAY_AUTH_SECRET}
    assert RAY_AUTH_KEY == "auth_token"  # the key KubeRay reads
    guide = (REPO / "docs" / "deployment.md").read_text()
    assert f"| `{RAY_AUTH_SECRET}` |" in guide
    for namespace in (cluster["metadata"]["namespace"], "quantos"):
        assert f"kubectl -n {namespace} create secret generic {RAY_AUTH_SECRET}" in guide


def _ray_address_settings() -> dict[str, str]:
    """QUANTOS_RAY_ADDRESS wherever it is set: the code location (and, through
    includeConfigInLaunchedRuns, its runs and steps) and the gateway (a submission's run config)."""
    found = {}
    for var in _user_code()["env"]:
        if var["name"] == "QUANTOS_RAY_ADDRESS":
            found["helm"] = var["value"]
    for var in _gateway_pod()["containers"][0]["env"]:
        if var["name"] == "QUANTOS_RAY_ADDRESS":
            found["gateway"] = var["value"]
    return found


def test_the_code_location_and_the_gateway_drive_the_same_ray_head() -> None:
    """Both build a ray_job step's k8s config (op tag; a submission's per-step config, which
    replaces it): they must agree that the step is a thin driver, and on which cluster."""
    cluster = _raycluster()
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    client_port = next(p["containerPort"] for p in head["ports"] if p["name"] == "client")
    meta = cluster["metadata"]
    service = f"{meta['name']}-head-svc.{meta['namespace']}.svc.cluster.local"
    assert _ray_address_settings() == {
        "helm": f"ray://{service}:{client_port}",
        "gateway": f"ray://{service}:{client_port}",
    }


def test_only_ray_job_drivers_reach_the_ray_head() -> None:
    """From outside the Ray cluster, only pods labelled as Ray drivers in the steps' namespace, and
    only on the Ray Client port; Ray pods among themselves on any port."""
    cluster = _raycluster()
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    policies = [
        d
        for _, d in _docs()
        if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == namespace
    ]
    head_labels = {"ray.io/cluster": name, "ray.io/node-type": "head"}
    worker_labels = {"ray.io/cluster": name, "ray.io/node-type": "worker"}

    def selects(policy: dict, labels: dict) -> bool:
        return policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()

    def peers(labels: dict) -> list[tuple[dict, list]]:
        rules = [r for p in policies if selects(p, labels) for r in p["spec"]["ingress"]]
        return [(peer, rule.get("ports") or []) for rule in rules for peer in rule["from"]]

    client = {"protocol": "TCP", "port": 10001}
    for labels in (head_labels, worker_labels):
        assert all(p["spec"]["policyTypes"] == ["Ingress"] for p in policies if selects(p, labels))
        for peer, ports in peers(labels):
            assert "ipBlock" not in peer
            if "namespaceSelector" not in peer:  # this namespace: only the cluster's own pods
                assert peer["podSelector"]["matchLabels"] == {"ray.io/cluster": name}
                continue
            assert labels == head_labels, "only the head is reachable from another namespace"
            assert peer["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "quantos"
            }
            assert peer["podSelector"]["matchLabels"] == {RAY_DRIVER_LABEL: "true"}
            assert ports == [client]
    assert any("namespaceSelector" in peer for peer, _ in peers(head_labels))


def test_the_charts_code_server_args_run_the_in_place_server(tmp_path: Path) -> None:
    """Dagster's chart gives each user deployment the args `dagster api grpc ...` and no
    command: the image's entrypoint serves them with the in-place code server (same options),
    and runs any other command as given."""
    entry = DEPLOY / "entrypoint.sh"
    assert '"/app/deploy/entrypoint.sh"' in (DEPLOY / "Dockerfile").read_text()
    assert _in_image("deploy/entrypoint.sh") and os.access(entry, os.X_OK)
    # `python` as the image has it, on PATH: this venv's
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    served = subprocess.run(
        [str(entry), "dagster", "api", "grpc", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert served.returncode == 0, served.stderr
    assert served.stdout.startswith("Usage: quantos code server"), served.stdout[:200]
    assert "--lazy-load-user-code" in served.stdout  # dagster api grpc's own options
    other = subprocess.run(
        [str(entry), "echo", "as", "given"], capture_output=True, text=True, check=True
    )
    assert other.stdout == "as given\n"
