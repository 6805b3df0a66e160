"""Choose a node pool for a step (DESIGN.md §5, seed 000 §4.1).

The pool is decided at translation time from the spec (resources, qos,
priority) so the asset graph shows where each step will run; the Kubernetes
config derived from it is attached per step and honoured by k8s_job_executor.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from quantos_assets.spec.models import Priority, Qos, Resources
from quantos_assets.spec.quantities import parse_bytes, parse_cpu

DEFAULT_POOLS_FILE = Path(__file__).resolve().parent.parent / "deploy" / "pools.yaml"


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


@lru_cache(maxsize=8)
def load_pools(path: str | None = None) -> dict[str, Pool]:
    file = Path(path or os.environ.get("QUANTOS_POOLS_FILE") or DEFAULT_POOLS_FILE)
    doc = yaml.safe_load(file.read_text())
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
