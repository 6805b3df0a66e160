"""Placement where a ray_job's work runs (issue 17, item 5).

In staging/prod with a Ray cluster address, a ray_job's step pod is a thin driver: no GPU, a
small CPU/memory slot on the on-demand cpu pool, the Ray token, the label the Ray head admits.
The node's cpu/mem/gpu size its Ray Train workers instead (`placement.ray_worker_resources`).
The Jobs come from dagster-k8s's own construction (quantos_assets.k8s.manifests) and are
validated strictly against the Kubernetes schema, as in test_prod_k8s_manifests.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from profiles import LOCAL, prod_profile

from quantos_assets.k8s.manifests import step_job_manifests
from quantos_assets.k8s.ray_driver import RAY_AUTH_SECRET, RAY_DRIVER_LABEL, RAY_WORKERS_ANNOTATION
from quantos_assets.k8s.step_config import submission_run_config
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.placement import (
    PlacementError,
    RayWorkersError,
    load_ray_driver,
    ray_worker_resources,
)
from quantos_assets.spec.loader import load_runtime_params
from quantos_assets.spec.models import DagSpec, NodeKind
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import Profile, active_profile

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"
SEED = REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml"
PARAMS = REPO / "tests" / "fixtures" / "seed_runtime_params.json"
TRAIN = "bt_xs_bilstm_v1__train_model"
ADDRESS = "ray://ray-gpu-head-svc.compute.svc.cluster.local:10001"
SPECS = sorted((REPO / "specs").glob("*.yaml"))


# staging/prod without a Ray cluster: what a step looked like before (the baseline)
PROD = prod_profile()
# ... and with one
WITH_CLUSTER = prod_profile(QUANTOS_RAY_ADDRESS=ADDRESS)


def _jobs(spec_file: Path, profile: Profile, params=None) -> dict[str, dict]:
    """Translated afresh: op tags are decided at translation, from the profile."""
    return step_job_manifests(build_pipeline(load_spec(spec_file), profile), params)


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


@pytest.mark.parametrize("with_params", [False, True], ids=["spec-only", "submission"])
def test_the_seed_trains_on_the_cluster_from_a_thin_driver(
    with_params: bool,
) -> None:
    params = (
        load_runtime_params(PARAMS) if with_params else None
    )  # priority high, gpu_spot, 2 scopes
    before = _jobs(SEED, PROD, params)
    after = _jobs(SEED, WITH_CLUSTER, params)
    for job in after.values():
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    # the node's own step asked for a GPU node before ...
    old = _pod(before[TRAIN])
    assert old["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # ... and is now a driver: no GPU, a small slot, on the on-demand cpu pool, no GPU toleration
    driver = _pod(after[TRAIN])
    container = driver["containers"][0]
    size = load_ray_driver()
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert (size.cpu_request, size.cpu_limit, size.mem) == (0.5, 1.0, 2 * 2**30)
    assert driver["nodeSelector"] == {"quantos.io/pool": "cpu"}
    assert not driver.get("tolerations")
    assert driver["priorityClassName"] == ("quantos-high" if with_params else "quantos-standard")
    labels = after[TRAIN]["spec"]["template"]["metadata"]["labels"]
    assert labels[RAY_DRIVER_LABEL] == "true" and labels["quantos.io/pool"] == "cpu"
    # the node's resources went to its Ray Train workers, and the pod says so
    recorded = json.loads(
        after[TRAIN]["spec"]["template"]["metadata"]["annotations"][RAY_WORKERS_ANNOTATION]
    )
    assert recorded == {"workers": 1, "per_worker": {"CPU": 8.0, "GPU": 1.0, "memory": 32 * 2**30}}
    # the Ray token, from its Secret, and the submission's scopes as before
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": RAY_AUTH_SECRET,
        "key": "auth_token",
    }
    assert container.get("envFrom") == old["containers"][0].get("envFrom")
    # hardening unchanged
    assert container["securityContext"] == old["containers"][0]["securityContext"]
    assert (
        driver["securityContext"] == old["securityContext"]
        and driver["automountServiceAccountToken"] is False
    )
    # every other step keeps its placement, byte for byte
    assert {k: v for k, v in after.items() if k != TRAIN} == {
        k: v for k, v in before.items() if k != TRAIN
    }


def test_without_a_cluster_nothing_changes() -> None:
    """Locally a step is a process and Ray is local: an address changes nothing of the k8s
    config."""
    prod_before = _jobs(SEED, PROD)
    local = active_profile({"QUANTOS_ENV": "local", "QUANTOS_RAY_ADDRESS": ADDRESS})
    assert local.cluster == LOCAL.cluster and local.cluster.ray_cluster is None
    assert _jobs(SEED, local) == prod_before
    blank = prod_profile(QUANTOS_ENV="staging", QUANTOS_RAY_ADDRESS="  ")
    assert blank.cluster.pods and blank.cluster.ray_cluster is None
    assert _jobs(SEED, blank) == prod_before
    assert prod_profile(QUANTOS_ENV="staging", QUANTOS_RAY_ADDRESS=ADDRESS).cluster.ray_cluster == (
        ADDRESS
    )


@pytest.mark.parametrize("spec_file", SPECS, ids=lambda p: p.name)
def test_only_ray_job_drivers_get_the_token_and_the_label(spec_file: Path) -> None:
    """The Ray head admits the label and the cluster the token: no other step may hold either."""
    spec = load_spec(spec_file).spec
    ray_ops = {f"{spec.pipeline_id}__{n.id}" for n in spec.nodes if n.kind is NodeKind.ray_job}
    params = load_runtime_params({"submission_id": "sub-1", "labels": {"team": "research"}})
    for jobs in (_jobs(spec_file, WITH_CLUSTER), _jobs(spec_file, WITH_CLUSTER, params)):
        for op, job in jobs.items():
            template = job["spec"]["template"]
            container = template["spec"]["containers"][0]
            token = [e for e in container["env"] if e["name"] == "RAY_AUTH_TOKEN"]
            is_driver = template["metadata"]["labels"].get(RAY_DRIVER_LABEL) == "true"
            assert is_driver == bool(token) == (op in ray_ops), op
            if is_driver:
                assert "nvidia.com/gpu" not in container["resources"]["limits"], op
                kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_the_submission_run_config_keeps_the_driver() -> None:
    """A submission's per-step config replaces the op tag (SHALLOW merge): it must be the same
    thin driver, and valid run config for k8s_job_executor (the env's valueFrom included)."""
    from dagster._config import process_config
    from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA

    pipeline = build_pipeline(load_spec(SEED), WITH_CLUSTER)
    run_config = submission_run_config(
        pipeline.spec, load_runtime_params(PARAMS), WITH_CLUSTER.cluster
    )
    result = process_config(_K8S_EXECUTOR_CONFIG_SCHEMA, run_config["execution"]["config"])
    assert result.success, result.errors
    step = run_config["execution"]["config"]["per_step_k8s_config"][TRAIN]
    assert step["pod_spec_config"]["node_selector"] == {"quantos.io/pool": "cpu"}
    assert "nvidia.com/gpu" not in step["container_config"]["resources"]["limits"]


def _spec(node: dict, default: dict | None = None) -> DagSpec:
    doc = {
        "version": 1,
        "pipeline_id": "ray_sizes",
        **({"resources": {"default": default}} if default else {}),
        "nodes": [
            {
                "id": "train",
                "kind": "ray_job",
                "params": {"trainer": "ridge"},
                "outs": ["model"],
                **node,
            }
        ],
    }
    return load_spec(_write(doc)).spec


def _write(doc: dict) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_ray_worker_resources_split_the_node_over_its_workers() -> None:
    seed = load_spec(SEED).spec
    assert ray_worker_resources(seed, seed.node("train_model")) == {
        "CPU": 8.0,
        "GPU": 1.0,
        "memory": 32 * 2**30,
    }
    four = _spec(
        {
            "params": {"trainer": "mlp", "workers": 4},
            "resources": {"cpu": "8", "mem": "16Gi", "gpu": 4},
        }
    )
    assert ray_worker_resources(four, four.node("train")) == {
        "CPU": 2.0,
        "GPU": 1.0,
        "memory": 4 * 2**30,
    }
    cpu_only = _spec(
        {"params": {"trainer": "mlp", "workers": 2}, "resources": {"cpu": "3"}},
        default={"mem": "6Gi"},
    )
    assert ray_worker_resources(cpu_only, cpu_only.node("train")) == {
        "CPU": 1.5,
        "GPU": 0.0,
        "memory": 3 * 2**30,
    }
    # nothing declared: what the step would have reserved, the cpu pool's default (1 CPU, 2Gi)
    bare = _spec({})
    assert ray_worker_resources(bare, bare.node("train")) == {
        "CPU": 1.0,
        "GPU": 0.0,
        "memory": 2 * 2**30,
    }


@pytest.mark.parametrize(
    ("node", "field", "message"),
    [
        (
            {"params": {"trainer": "mlp", "workers": 0}},
            "params.workers",
            "workers must be a whole number from 1 to 64, not 0",
        ),
        (
            {"params": {"trainer": "mlp", "workers": "2"}},
            "params.workers",
            "workers must be a whole number from 1 to 64, not '2'",
        ),
        (
            {"params": {"trainer": "mlp", "workers": True}},
            "params.workers",
            "workers must be a whole number from 1 to 64, not True",
        ),
        (
            {"params": {"trainer": "mlp", "workers": 2}, "resources": {"gpu": 1}},
            "resources.gpu",
            (
                "gpu 1 with 2 Ray Train worker(s): a ray_job gets one GPU per worker, so ask for "
                "gpu: 2 or set params.workers: 1"
            ),
        ),
    ],
)
def test_workers_the_cluster_cannot_honour_are_one_clear_line(
    node: dict, field: str, message: str
) -> None:
    doc = {
        "version": 1,
        "pipeline_id": "ray_sizes",
        "nodes": [{"id": "train", "kind": "ray_job", "outs": ["model"], **node}],
    }
    from quantos_assets.spec.loader import SpecError

    path = _write(doc)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{_line(path, field)}: nodes[0].{field}: {message}"
    ]
    spec = DagSpec.model_validate(doc)
    with pytest.raises(
        RayWorkersError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
    ) as err:
        ray_worker_resources(spec, spec.node("train"))
    assert err.value.field == field and isinstance(err.value, PlacementError)


def _line(path: Path, field: str) -> int:
    key = field.split(".")[-1]
    return next(
        i
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip().startswith(f"{key}:")
    )


@pytest.mark.parametrize("spec_file", SPECS, ids=lambda p: p.name)
def test_every_example_ray_worker_fits_a_worker_group_of_the_cluster(spec_file: Path) -> None:
    """A worker no group can hold waits forever (the autoscaler finds no node type for it)."""
    from kubernetes.utils import parse_quantity

    [cluster] = [
        d
        for d in yaml.safe_load_all((REPO / "deploy" / "k8s" / "raycluster-gpu.yaml").read_text())
        if d and d["kind"] == "RayCluster"
    ]
    shapes = []
    for group in cluster["spec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        shapes.append(
            {
                "CPU": float(parse_quantity(limits["cpu"])),
                "GPU": float(parse_quantity(limits.get("nvidia.com/gpu", 0))),
                "memory": float(parse_quantity(limits["memory"])),
            }
        )
    spec = load_spec(spec_file).spec
    for node in spec.nodes:
        if node.kind is NodeKind.ray_job:
            need = ray_worker_resources(spec, node)
            assert any(all(need[k] <= shape[k] for k in need) for shape in shapes), (
                node.id,
                need,
                shapes,
            )


def test_the_gates_retrain_check_drives_the_cluster_too() -> None:
    """The promotion gate's reproducibility check retrains the model the way its node did (on
    Ray), from the node's own step config: a thin driver with the token, plus the audit key."""
    pipeline = build_pipeline(load_spec(REPO / "specs" / "xs_momentum_backtest.yaml"), WITH_CLUSTER)
    assert pipeline.gates is not None
    config = pipeline.gates.checks.node_def.tags["dagster-k8s/config"]
    config = json.loads(config) if isinstance(config, str) else config
    container = config["container_config"]
    assert config["pod_template_spec_metadata"]["labels"][RAY_DRIVER_LABEL] == "true"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert [e["name"] for e in container["env"]] == ["RAY_AUTH_MODE", "RAY_AUTH_TOKEN"]
    assert container["env_from"] == [{"secret_ref": {"name": "quantos-audit"}}]
