"""Choose a node pool for a step (DESIGN.md §5, seed 000 §4.1), and size the work a step hands on.

The pool is decided at translation time from the spec (resources, qos,
priority) so the asset graph shows where each step will run; the Kubernetes
config derived from it is attached per step and honoured by k8s_job_executor.
A ray_job's work may run on a Ray cluster instead of in its step: then the node's resources
size the Ray Train workers (`ray_worker_resources`) and the step is a thin driver
(`load_ray_driver`, `quantos_assets/k8s/ray_driver.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from quantos_assets.spec.models import DagSpec, Node, Priority, Qos, Resources
from quantos_assets.spec.quantities import parse_bytes, parse_cpu
from resources.profile import pools_file


@dataclass(frozen=True)
class Pool:
    name: str
    family: str  # cpu | gpu
    spot: bool
    max_cpu: float
    max_mem: int
    max_gpu: int
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[tuple[tuple[str, str], ...], ...] = ()
    priority_class: str | None = None
    default_cpu: float = 1.0
    default_mem: int = 2 * 2**30
    default_gpu: int = 0
    # priority (high/critical) -> PriorityClass name; shared by all pools of a file
    urgent_priority_classes: tuple[tuple[str, str], ...] = ()

    def priority_class_for(self, priority: Priority) -> str | None:
        """Urgent work gets the higher PriorityClass; the rest keeps the pool's own."""
        return dict(self.urgent_priority_classes).get(priority.value, self.priority_class)


class PlacementError(ValueError):
    """No pool can take the request; the message is one user-facing line."""


@dataclass(frozen=True)
class RayDriver:
    """The step pod of a ray_job whose work runs on a Ray cluster: it only drives Ray Train.

    CPU may burst to `cpu_limit` (start-up imports the code location) but is requested at
    `cpu_request` (the driver mostly waits on the cluster); memory is requested at its limit,
    because a driver OOM-killed mid-training loses the training.
    """

    cpu_request: float = 0.5
    cpu_limit: float = 1.0
    mem: int = 2 * 2**30


class RayWorkersError(PlacementError):
    """A ray_job whose workers cannot be sized; `field` is the spec path at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _pools_file(path: str | None) -> Path:
    return Path(path) if path else pools_file()


def load_pools(path: str | None = None) -> dict[str, Pool]:
    """The pools of `path` (default: the profile's pools file, resolved now, so a changed
    QUANTOS_POOLS_FILE is seen; each file is parsed once)."""
    return _load_pools(str(_pools_file(path)))


@lru_cache(maxsize=8)
def _load_pools(path: str) -> dict[str, Pool]:
    doc = yaml.safe_load(Path(path).read_text())
    urgent = tuple(sorted((doc.get("urgent_priority_classes") or {}).items()))
    pools: dict[str, Pool] = {}
    for name, cfg in doc["pools"].items():
        default = cfg.get("default") or {}
        pools[name] = Pool(
            name=name,
            family=cfg["family"],
            spot=bool(cfg.get("spot", False)),
            max_cpu=parse_cpu(cfg["max"]["cpu"]),
            max_mem=parse_bytes(cfg["max"]["mem"]),
            max_gpu=int(cfg["max"].get("gpu", 0)),
            node_selector=tuple(sorted((cfg.get("node_selector") or {}).items())),
            tolerations=tuple(tuple(sorted(t.items())) for t in cfg.get("tolerations") or ()),
            priority_class=cfg.get("priority_class"),
            default_cpu=parse_cpu(default.get("cpu", "1")),
            default_mem=parse_bytes(default.get("mem", "2Gi")),
            default_gpu=int(default.get("gpu", 0)),
            urgent_priority_classes=urgent,
        )
    return pools


def choose_pool(
    resources: Resources,
    qos: Qos,
    priority: Priority,
    requested_pool: str | None = None,
    pools: dict[str, Pool] | None = None,
) -> str:
    """Ordered rules: family by gpu, on-demand for urgent work, spot when allowed.

    `requested_pool` (runtime `affinity.compute_pool`) is one submission-wide wish: it picks
    that pool for the nodes of its family (a cpu node asking for `gpu_spot` would waste a
    GPU node) and wins over the spot/on-demand preference, because the submitter chose it
    knowingly. Nodes of the other family keep the ordinary rules. An unknown pool, or one
    the node's request does not fit, is an error: silently running elsewhere would hide it.
    """
    pools = pools if pools is not None else load_pools()
    family = "gpu" if (resources.gpu or 0) > 0 else "cpu"
    urgent = priority in (Priority.high, Priority.critical)
    want_spot = qos == Qos.spot_ok and not urgent
    if requested_pool is not None and requested_pool not in pools:
        raise PlacementError(
            f"compute_pool '{requested_pool}' does not exist (pools: {', '.join(sorted(pools))})"
        )
    if requested_pool is not None and pools[requested_pool].family == family:
        candidates = [pools[requested_pool]]
    else:
        candidates = sorted(
            (p for p in pools.values() if p.family == family),
            key=lambda p: (p.spot != want_spot, p.name),
        )
    problems: list[str] = []
    for pool in candidates:
        problem = _does_not_fit(pool, resources)
        if problem is None:
            return pool.name
        problems.append(f"{pool.name}: {problem}")
    raise PlacementError("no pool can satisfy the request (" + "; ".join(problems) + ")")


def _does_not_fit(pool: Pool, res: Resources) -> str | None:
    if (res.gpu or 0) > pool.max_gpu:
        return f"gpu {res.gpu} > max {pool.max_gpu}"
    if res.cpu is not None and res.cpu > pool.max_cpu:
        return f"cpu {res.cpu:g} > max {pool.max_cpu:g}"
    if res.mem is not None and res.mem > pool.max_mem:
        return f"mem {res.mem // 2**30}Gi > max {pool.max_mem // 2**30}Gi"
    return None


def load_ray_driver(path: str | None = None) -> RayDriver:
    """The `ray_driver` block of the pools file (RayDriver's defaults when it has none)."""
    return _load_ray_driver(str(_pools_file(path)))


@lru_cache(maxsize=8)
def _load_ray_driver(path: str) -> RayDriver:
    file = Path(path)
    block = (yaml.safe_load(file.read_text()) or {}).get("ray_driver") or {}
    requests, limits = block.get("requests") or {}, block.get("limits") or {}
    base = RayDriver()
    try:
        driver = RayDriver(
            cpu_request=parse_cpu(requests.get("cpu", base.cpu_request)),
            cpu_limit=parse_cpu(limits.get("cpu", base.cpu_limit)),
            mem=parse_bytes(limits.get("mem", requests.get("mem", base.mem))),
        )
    except ValueError as err:
        raise PlacementError(f"{file}: ray_driver: {err}") from None
    if driver.cpu_request > driver.cpu_limit:
        raise PlacementError(f"{file}: ray_driver: requests.cpu is above limits.cpu")
    if requests.get("mem") is not None and parse_bytes(requests["mem"]) != driver.mem:
        raise PlacementError(
            f"{file}: ray_driver: requests.mem must equal limits.mem (never OOM-killed below its "
            "limit)"
        )
    return driver


def ray_worker_resources(
    spec: DagSpec, node: Node, pools: dict[str, Pool] | None = None
) -> dict[str, float]:
    """What ONE Ray Train worker of a ray_job asks the Ray cluster for.

    Contract (the ray_job runner builds its `ScalingConfig` from this):

    - returns `{"CPU": cpu / workers, "GPU": 1.0 or 0.0, "memory": mem_bytes / workers}`,
      Ray's own resource names, ready for `ScalingConfig(num_workers=workers,
      use_gpu=r["GPU"] > 0, resources_per_worker=r)`; `workers` is `params.workers`
      (default 1; `ray_train_workers`);
    - cpu and mem are the node's own over the spec's default, and where both leave one unset,
      the default of the pool the node would be placed on: the totals its step pod reserved
      when the step did the work itself, so moving the work to Ray neither grows nor shrinks it;
    - GPUs: one per worker (data-parallel training puts one rank on each device), so a node
      asking for GPUs must ask for exactly `workers` of them;
    - raises `RayWorkersError` (a PlacementError: one line, `field` the spec path at fault)
      for a `workers` that is not a whole number from 1 to MAX_RAY_WORKERS or a gpu count other
      than 0 or `workers`.

    The numbers are the cluster's to honour (staging/prod, where the step pod is a thin
    driver). On a local Ray smaller than them the caller must shrink them to what the local
    cluster has (and train on CPU without GPUs), or the workers would wait forever.
    """
    workers = check_ray_workers(spec, node)
    res = spec.effective_resources(node)
    pools = pools if pools is not None else load_pools()
    pool = pools[choose_pool(res, spec.slo.qos, spec.slo.priority, pools=pools)]
    cpu = res.cpu if res.cpu is not None else pool.default_cpu
    mem = res.mem if res.mem is not None else pool.default_mem
    return {"CPU": cpu / workers, "GPU": 1.0 if res.gpu else 0.0, "memory": mem // workers}


def check_ray_workers(spec: DagSpec, node: Node) -> int:
    """The node's Ray Train workers, once its workers and gpu agree (else RayWorkersError):
    `quantos validate` calls it so a spec the cluster could not honour fails with its line."""
    workers = ray_train_workers(node)
    gpu = spec.effective_resources(node).gpu or 0
    if gpu and gpu != workers:
        raise RayWorkersError(
            "resources.gpu",
            f"gpu {gpu} with {workers} Ray Train worker(s): a ray_job gets one GPU per worker, "
            f"so ask for gpu: {workers} or set params.workers: {gpu}",
        )
    return workers


# The Ray cluster is shared by every team: one spec must not ask it for thousands of
# workers (each an actor and a process), whatever its total CPU says.
MAX_RAY_WORKERS = 64


def ray_train_workers(node: Node) -> int:
    """`params.workers` of a ray_job: its data-parallel Ray Train workers (default 1)."""
    workers = node.params.get("workers", 1)
    if (
        isinstance(workers, bool)
        or not isinstance(workers, int)
        or not 1 <= workers <= MAX_RAY_WORKERS
    ):
        raise RayWorkersError(
            "params.workers",
            f"workers must be a whole number from 1 to {MAX_RAY_WORKERS}, not {workers!r}",
        )
    return workers
