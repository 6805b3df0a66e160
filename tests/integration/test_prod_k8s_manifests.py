"""Every step of the example specs as the Job k8s_job_executor would launch (and the Pod an
image-only python_task's step creates through PipesK8sClient), validated.

The manifests come from dagster-k8s's own job construction (quantos_assets.k8s.manifests) and
are checked in strict mode against the Kubernetes OpenAPI schema: an unknown or misspelt field
fails here rather than at `kubectl apply` time in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from profiles import prod_profile

from quantos_assets.k8s.manifests import pipes_pod_manifests, step_job_manifests
from quantos_assets.k8s.step_config import SecretScopeError, secret_name, submission_run_config
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.placement import PlacementError, choose_pool
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec.models import Priority, Qos, Resources
from quantos_assets.spec_rules.firm import load_spec

# The prod build (no Ray cluster configured: those steps are in test_ray_driver_placement)
PROD = prod_profile()
REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"
SEED = REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml"
PARAMS = REPO / "tests" / "fixtures" / "seed_runtime_params.json"


def _pod(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def seed_pipeline():
    return build_pipeline(load_spec(SEED), PROD)


@pytest.mark.parametrize("spec_file", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.name)
@pytest.mark.parametrize("with_params", [False, True], ids=["spec-only", "submission"])
def test_every_step_manifest_validates_strictly(spec_file: Path, with_params: bool) -> None:
    pipeline = build_pipeline(load_spec(spec_file), PROD)
    params = load_runtime_params(PARAMS) if with_params else None
    manifests = step_job_manifests(pipeline, params)
    assert set(manifests) == {
        f"{pipeline.spec.pipeline_id}__{n}" for n in pipeline.pools
    } | _gate_steps(pipeline)
    for name, manifest in manifests.items():
        assert manifest["kind"] == "Job", name
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pods = pipes_pod_manifests(pipeline, params)
    assert set(pods) <= set(manifests)  # an image-only task's pod belongs to one of its steps
    for name, pod in pods.items():
        assert pod["kind"] == "Pod", name
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_seed_placement_from_the_spec(seed_pipeline) -> None:
    manifests = step_job_manifests(seed_pipeline)
    train = _pod(manifests["bt_xs_bilstm_v1__train_model"])
    assert train["nodeSelector"] == {"quantos.io/pool": "gpu-spot"}
    limits = train["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and limits["cpu"] == "8" and limits["memory"] == "32Gi"
    # spot_ok batch work -> cpu_spot: fetch_data's step, and the pod of the image-only
    # compute_features (its step only launches that pod, see the next test)
    pods = pipes_pod_manifests(seed_pipeline)
    for pod in (
        _pod(manifests["bt_xs_bilstm_v1__fetch_data"]),
        pods["bt_xs_bilstm_v1__compute_features"]["spec"],
    ):
        assert pod["nodeSelector"] == {"quantos.io/pool": "cpu-spot"}
        assert {"key": "quantos.io/spot", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]
        assert pod["priorityClassName"] == "quantos-batch"
        assert pod["containers"][0]["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
        assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]


def test_an_image_only_tasks_step_is_a_small_on_demand_launcher(seed_pipeline) -> None:
    """The step that creates and watches the pod holds no GPU, no spot node and no secret."""
    params = load_runtime_params(PARAMS)
    for manifests in (step_job_manifests(seed_pipeline), step_job_manifests(seed_pipeline, params)):
        launcher = _pod(manifests["bt_xs_bilstm_v1__compute_features"])
        assert launcher["nodeSelector"] == {"quantos.io/pool": "cpu"}
        assert launcher["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
        assert not launcher["containers"][0].get("envFrom")
    pod = pipes_pod_manifests(seed_pipeline, params)["bt_xs_bilstm_v1__compute_features"]["spec"]
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert pod["containers"][0]["envFrom"], "the pod gets the submission's secret scopes"


def test_every_step_is_hardened(seed_pipeline) -> None:
    for op, manifest in step_job_manifests(seed_pipeline).items():
        pod = _pod(manifest)
        container = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        # only the step of the image-only task talks to the API: it creates the task's pod
        assert pod["automountServiceAccountToken"] is (op == "bt_xs_bilstm_v1__compute_features")
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
        assert not container.get("envFrom")  # no submission -> no secrets at all


def test_submission_brings_its_secrets_labels_priority_and_affinity(seed_pipeline) -> None:
    params = load_runtime_params(PARAMS)  # priority high, compute_pool gpu_spot, 2 scopes
    manifests = step_job_manifests(seed_pipeline, params)
    train = _pod(manifests["bt_xs_bilstm_v1__train_model"])
    # affinity gpu_spot picks among the gpu pools; high priority -> the higher PriorityClass
    assert train["nodeSelector"] == {"quantos.io/pool": "gpu-spot"}
    assert train["priorityClassName"] == "quantos-high"
    assert [e["secretRef"]["name"] for e in train["containers"][0]["envFrom"]] == [
        "quantos-scope-binance-readonly",
        "quantos-scope-s3-lake-ro",
    ]
    labels = manifests["bt_xs_bilstm_v1__train_model"]["spec"]["template"]["metadata"]["labels"]
    assert labels["quantos.io/team"] == "research"
    assert labels["quantos.io/submission"] == "sub-2025-10-29-001"
    assert labels["quantos.io/pipeline"] == "bt_xs_bilstm_v1"
    # cpu steps: the gpu affinity does not apply; high priority moves them off spot and the
    # SHALLOW merge leaves no spot toleration behind
    fetch = _pod(manifests["bt_xs_bilstm_v1__fetch_data"])
    assert fetch["nodeSelector"] == {"quantos.io/pool": "cpu"}
    assert not fetch.get("tolerations")
    assert fetch["priorityClassName"] == "quantos-high"


def test_submission_config_is_valid_k8s_job_executor_run_config(seed_pipeline) -> None:
    from dagster import ConfigMapping  # noqa: F401  (dagster importable before dagster_k8s)
    from dagster._config import process_config
    from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA

    run_config = submission_run_config(
        seed_pipeline.spec, load_runtime_params(PARAMS), seed_pipeline.cluster
    )
    result = process_config(_K8S_EXECUTOR_CONFIG_SCHEMA, run_config["execution"]["config"])
    assert result.success, result.errors


def test_impossible_requests_are_one_clear_line() -> None:
    with pytest.raises(PlacementError, match=r"mem 1024Gi > max 768Gi"):
        choose_pool(Resources(gpu=1, mem=1024 * 2**30), Qos.on_demand, Priority.normal)
    with pytest.raises(PlacementError, match=r"compute_pool 'tpu_spot' does not exist"):
        choose_pool(Resources(gpu=1), Qos.on_demand, Priority.normal, requested_pool="tpu_spot")
    # the requested pool is of the node's family but too small -> error, not silent fallback
    with pytest.raises(PlacementError, match=r"cpu_spot: cpu 100 > max 64"):
        choose_pool(Resources(cpu=100), Qos.on_demand, Priority.normal, requested_pool="cpu_spot")
    with pytest.raises(SecretScopeError, match="secrets_scope 'Prod_Keys'"):
        secret_name("Prod_Keys")


def test_affinity_overrides_spot_preference_within_the_family() -> None:
    assert (
        choose_pool(Resources(cpu=2), Qos.spot_ok, Priority.normal, requested_pool="cpu") == "cpu"
    )
    assert (
        choose_pool(Resources(gpu=2), Qos.on_demand, Priority.normal, requested_pool="gpu_spot")
        == "gpu_spot"
    )
    # a cpu node ignores a gpu pool request and keeps its own rules
    assert (
        choose_pool(Resources(cpu=2), Qos.spot_ok, Priority.low, requested_pool="gpu") == "cpu_spot"
    )


def test_quantos_manifests_writes_valid_jobs(tmp_path: Path) -> None:
    import yaml

    from quantos_assets.apps.cli.main import main

    out = tmp_path / "manifests"
    assert main(["manifests", str(SEED), "-o", str(out), "--params", str(PARAMS)]) == 0
    files = sorted(out.glob("*.yaml"))
    assert [f.name for f in files] == [
        "bt_xs_bilstm_v1__compute_features.pipes-pod.yaml",  # the image-only task's own pod
        "bt_xs_bilstm_v1__compute_features.yaml",
        "bt_xs_bilstm_v1__fetch_data.yaml",
        "bt_xs_bilstm_v1__train_model.yaml",
    ]
    for f in files:
        kubernetes_validate.validate(yaml.safe_load(f.read_text()), K8S_VERSION, strict=True)
    train = yaml.safe_load((out / "bt_xs_bilstm_v1__train_model.yaml").read_text())
    assert _pod(train)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    pod = yaml.safe_load((out / "bt_xs_bilstm_v1__compute_features.pipes-pod.yaml").read_text())
    assert (
        pod["kind"] == "Pod"
        and pod["spec"]["containers"][0]["image"] == "ghcr.io/archetype/feature-kit:0.3.2"
    )
    # --params reached the pod: the submission's secret scopes and labels
    assert [e["secretRef"]["name"] for e in pod["spec"]["containers"][0]["envFrom"]] == [
        "quantos-scope-binance-readonly",
        "quantos-scope-s3-lake-ro",
    ]
    assert pod["metadata"]["labels"]["quantos.io/submission"] == "sub-2025-10-29-001"


def test_quantos_manifests_rejects_an_unknown_compute_pool(tmp_path: Path, capsys) -> None:
    import json

    from quantos_assets.apps.cli.main import main

    params = json.loads(PARAMS.read_text())
    params["affinity"]["compute_pool"] = "tpu"
    bad = tmp_path / "params.json"
    bad.write_text(json.dumps(params))
    assert main(["manifests", str(SEED), "-o", str(tmp_path / "o"), "--params", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"{bad}: compute_pool 'tpu' does not exist (pools: cpu, cpu_spot, gpu, gpu_spot)"


def test_quantos_run_refuses_params_production_could_not_honour(
    data_dir, tmp_path: Path, capsys
) -> None:
    import json

    from quantos_assets.apps.cli.main import main

    params = json.loads(PARAMS.read_text())
    params["affinity"]["compute_pool"] = "gpu_huge"
    bad = tmp_path / "params.json"
    bad.write_text(json.dumps(params))
    assert main(["run", str(SEED), "--params", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        (
            f"{bad}:1: affinity.compute_pool: compute_pool 'gpu_huge' does not exist (pools: cpu, "
            "cpu_spot, gpu, gpu_spot)"
        )
    ]


def test_run_tags_carry_the_whole_submission() -> None:
    """The Pipes pod of a step rebuilds the submission from the run's tags: nothing is lost."""
    from quantos_assets.k8s.step_config import params_from_run_tags
    from quantos_assets.run_tags import runtime_run_tags, spec_run_tags

    params = load_runtime_params(PARAMS)
    spec = load_spec(SEED).spec
    assert params_from_run_tags({**spec_run_tags(spec), **runtime_run_tags(params)}) == params
    assert params_from_run_tags(spec_run_tags(spec)) is None  # no submission: spec-only placement


# --- tenancy (issue 16): a step holds its own submission's scopes, and nothing else does ---
def _secrets(pod: dict) -> set[str]:
    """Every Secret a pod spec can read: envFrom, env valueFrom and secret volumes."""
    names = {v["secret"]["secretName"] for v in pod.get("volumes") or [] if v.get("secret")}
    for container in [*pod["containers"], *(pod.get("initContainers") or [])]:
        names |= {
            e["secretRef"]["name"] for e in container.get("envFrom") or [] if e.get("secretRef")
        }
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env") or []
            if (e.get("valueFrom") or {}).get("secretKeyRef")
        }
    return names


def _gate_steps(pipeline) -> set[str]:
    """The promotion stages' steps: they run platform code (and hold the audit key), no node."""
    return {stage.op.name for stage in pipeline.gates.stages} if pipeline.gates else set()


def _team_params(team: str, scopes: list[str]):
    return load_runtime_params(
        {"submission_id": f"sub-{team}", "labels": {"team": team}, "secrets_scope": scopes}
    )


@pytest.mark.parametrize("spec_file", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_each_step_is_a_pod_with_only_its_teams_granted_scopes(spec_file: Path) -> None:
    from quantos_assets.tenancy.teams import load_teams

    teams = load_teams(REPO / "deploy" / "teams.yaml")
    pipeline = build_pipeline(load_spec(spec_file), PROD)
    for team, policy in teams.teams.items():
        mine = {secret_name(s) for s in policy.secrets_scopes}
        theirs = {
            secret_name(s) for t, p in teams.teams.items() if t != team for s in p.secrets_scopes
        } - mine
        assert mine and theirs, "deploy/teams.yaml grants each team scopes of its own"
        params = _team_params(team, policy.secrets_scopes)
        jobs = step_job_manifests(pipeline, params)
        pods = {name: _pod(job) for name, job in jobs.items()}
        # one Job, one pod template, one container per step
        assert len({job["metadata"]["name"] for job in jobs.values()}) == len(jobs)
        assert all(len(pod["containers"]) == 1 for pod in pods.values())
        for name, pod in pods.items():
            if name in _gate_steps(pipeline):  # the audit key's Secret only, never a team's scope
                assert _secrets(pod) == {"quantos-audit"}, (team, name)
                continue
            launcher = not pod["containers"][0].get("envFrom")
            assert _secrets(pod) == (set() if launcher else mine), (team, name)
            assert not _secrets(pod) & theirs
            # the step's container sees the scopes prefixed, so they cannot pass for its settings
            assert {e.get("prefix") for e in pod["containers"][0].get("envFrom") or []} <= {
                "QUANTOS_SCOPE__"
            }
        for name, pod in pipes_pod_manifests(pipeline, params).items():
            assert _secrets(pod["spec"]) == mine, (team, name)  # the image's own pod: unprefixed
            assert all("prefix" not in e for e in pod["spec"]["containers"][0]["envFrom"])


# --- the run pod, as the configured run launcher creates it (through a loopback Kubernetes API) ---
RUN_ID = "0f1e2d3c-0000-4000-8000-000000000000"
IMAGE_PYTHON = "/app/.venv/bin/python"  # the code server's interpreter in the user-code image


def _helm_env_secrets() -> list[str]:
    helm = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    return list(helm["runLauncher"]["config"]["customRunLauncher"]["config"]["env_secrets"])


def _launch_run_pod(tmp_path: Path, launcher_class: type | None = None) -> tuple[dict, Any]:
    """The Job the run launcher of deploy/dagster.prod.yaml (with the Helm values' platform
    Secret) sends the cluster for a submission's run, as the API received it, and the run's
    ExecuteRunArgs as the launcher built them. `launcher_class`: another class with the same
    config (dagster-k8s's own, to compare with)."""
    from dagster import DagsterInstance
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._grpc.types import ExecuteRunArgs
    from kube_api_stub import kube_api, prod_run_launcher

    from quantos_assets.k8s.manifests import DEFAULT_IMAGE
    from quantos_assets.run_tags import runtime_run_tags, spec_run_tags
    from resources.run_tag_keys import TAG_TEAM

    params = load_runtime_params(PARAMS)  # two secrets scopes
    assert params.secrets_scope
    spec = load_spec(SEED).spec
    origin = JobPythonOrigin(  # what the user-code deployment's code server reports
        spec.pipeline_id,
        RepositoryPythonOrigin(
            executable_path=IMAGE_PYTHON,
            code_pointer=ModuleCodePointer("definitions.locations", "team-research", "/app"),
            container_image=DEFAULT_IMAGE,
            entry_point=["dagster"],  # `dagster api grpc`'s default
        ),
    )
    tags = {**spec_run_tags(spec), **runtime_run_tags(params), TAG_TEAM: "research"}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "home").mkdir()
    with (
        kube_api(tmp_path) as api,
        DagsterInstance.local_temp(str(tmp_path / "home")) as instance,
    ):
        run = instance.add_run(
            DagsterRun(job_name=spec.pipeline_id, run_id=RUN_ID, job_code_origin=origin, tags=tags)
        )
        launcher = prod_run_launcher(api, env_secrets=_helm_env_secrets())
        if launcher_class is not None:
            data = launcher.inst_data
            assert data is not None
            launcher = launcher_class(inst_data=data, **data.config_dict)
        launcher.register_instance(instance)
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        expected = ExecuteRunArgs(job_origin=origin, run_id=RUN_ID, instance_ref=instance.get_ref())
    [(namespace, manifest)] = api.created()
    assert namespace == "quantos"
    return manifest, expected


def test_the_run_pod_runs_the_run_worker_with_the_runs_execute_run_args(tmp_path: Path) -> None:
    """On Kubernetes the run pod opens the run's span (quantos_assets/apps/launcher/
    run_worker.py) where dagster-k8s's launcher would run `dagster api execute_run`: the same
    ExecuteRunArgs, run by the code location's interpreter; every other field of the Job is
    the one K8sRunLauncher builds."""
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import deserialize_value
    from dagster_k8s import K8sRunLauncher

    from quantos_assets.apps.launcher.k8s_run_launcher import TracedK8sRunLauncher

    manifest, expected = _launch_run_pod(tmp_path)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    [container] = _pod(manifest)["containers"]
    assert "command" not in container  # the image's (none: args are the whole command line)
    python, flag, module, payload = container["args"]
    assert (python, flag, module) == (IMAGE_PYTHON, "-m", "quantos_assets.apps.launcher.run_worker")
    assert deserialize_value(payload, ExecuteRunArgs) == expected

    plain, _ = _launch_run_pod(tmp_path / "plain", K8sRunLauncher)
    [plain_container] = _pod(plain)["containers"]
    assert plain_container["args"][:3] == ["dagster", "api", "execute_run"]
    assert deserialize_value(plain_container["args"][3], ExecuteRunArgs).run_id == RUN_ID
    for job in (manifest, plain):
        del _pod(job)["containers"][0]["args"]
    assert manifest == plain
    assert issubclass(TracedK8sRunLauncher, K8sRunLauncher)  # the executor's cast holds


def test_the_run_worker_pod_gets_no_scope_secret(tmp_path: Path) -> None:
    """The run worker (the run launcher as deploy/dagster.prod.yaml and the Helm values
    configure it) runs no node: whatever the submission's scopes, it gets only the platform's
    Secret."""
    manifest, _ = _launch_run_pod(tmp_path)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert _secrets(_pod(manifest)) == set(_helm_env_secrets())
    assert not [s for s in _secrets(_pod(manifest)) if s.startswith("quantos-scope-")]


def test_the_lake_maintenance_step_is_hardened_like_every_step() -> None:
    """A platform step (it reads every team's tables and holds the audit key) gets the same
    pod as a team's step: non-root, read-only root, no token, on the cpu pool."""
    from quantos_assets.k8s.manifests import ops_job_manifests
    from quantos_assets.k8s.step_config import AUDIT_SECRET
    from quantos_assets.lake.job import build_lake_job
    from quantos_assets.spec.derived_names import LAKE_JOB, LAKE_OP

    job = build_lake_job({"p": "team-a"}, PROD.lake_upkeep)
    (manifest,) = ops_job_manifests(LAKE_JOB, list(job.graph.node_defs)).values()
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = _pod(manifest)
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"quantos.io/pool": "cpu"}
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == [AUDIT_SECRET]
    assert manifest["metadata"]["labels"]["dagster/op"] == LAKE_OP
