"""The Ray cluster ray_job nodes train on: a local Ray by default, a cluster by address.

`ray` is imported lazily, after the environment is prepared: two of Ray's
switches are read when Ray is imported or initialised, and a local cluster
must work out of the box (no `ray start`, no token, no per-run virtualenv).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

# Local-only defaults; an explicit setting in the environment always wins.
_LOCAL_ENV = {
    # Ray >= 2.5x enables token auth; a private local cluster needs none.
    "RAY_AUTH_MODE": "disabled",
    # Under `uv run`, Ray would otherwise build a fresh virtualenv per
    # cluster from the working directory (~10 s); the driver's is the same.
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}
# For every cluster, set in the driver (Ray Train passes it on to its controller): the
# controller looks at its workers this often. At Ray's 2 s it noticed a finished training
# ~4 s late (measured: 4.2 s from the loop's end to `fit()` returning; 1.2 s at 0.25 s); one
# small call per worker four times a second is nothing next to a training.
_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


class RayResource(ConfigurableResource):
    """Connects to Ray once per process; `address=None` starts a local Ray."""

    address: str | None = Field(
        default=None,
        description="Ray address ('auto', 'ray://host:10001'); None starts a local Ray.",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs of the local Ray (None: all cores); ignored with an address.",
    )
    namespace: str | None = Field(
        default=None, description="Ray namespace for named actors and jobs."
    )
    autoscaling: bool = Field(
        default=False,
        description=(
            "The cluster adds nodes for pending work (KubeRay's autoscaler): a training's resource "
            "request is passed on as is. False: it is cut to what the largest node has."
        ),
    )

    @property
    def is_local(self) -> bool:
        return self.address is None

    def init(self) -> Any:
        """Return the `ray` module, initialised (idempotent within a process)."""
        for key, value in {**_TRAIN_ENV, **(_LOCAL_ENV if self.is_local else {})}.items():
            os.environ.setdefault(key, value)
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "ignore_reinit_error": True,
                "include_dashboard": False,
                "log_to_driver": False,
                "namespace": self.namespace,
            }
            if self.is_local:
                kwargs["num_cpus"] = self.num_cpus
            else:
                kwargs["address"] = self.address
            ray.init(**kwargs)
        configure_ray_data()
        return ray

    def largest_node(self) -> dict[str, float] | None:
        """Resources of the biggest live node (CPU, GPU, memory), or None where the cluster
        grows to fit (a request for more than any node has would otherwise wait forever)."""
        if self.autoscaling:
            return None
        ray = self.init()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if not nodes:
            return None
        return max(
            ({k: float(n.get(k, 0.0)) for k in ("CPU", "GPU", "memory")} for n in nodes),
            key=lambda r: (r["GPU"], r["CPU"], r["memory"]),
        )

    def cpus(self) -> float:
        """CPUs the connected cluster offers (for sizing tasks so they never wait forever)."""
        ray = self.init()
        return float(ray.cluster_resources().get("CPU", 1.0))


def configure_ray_data(context: Any = None) -> None:
    """This process's Ray Data settings, applied before any dataset exists: a Dataset keeps the
    DataContext of its creation, so a setting made after `read_iceberg` does not reach it (the
    first training in a process then ran differently from every later one, and a gate's retrain
    in the same process could not reproduce it). With `context` (a dataset's own,
    `Dataset.context`), that one instead: what is derived from that dataset then gets them whoever
    made it."""
    import logging

    import ray.data
    from ray.data.context import ShuffleStrategy

    context = context if context is not None else ray.data.DataContext.get_current()
    # The step log gets one line per phase, not Ray Data's progress reports every few seconds.
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Same data, same order, every run: part of what makes a seed reproduce its metrics.
    context.execution_options.preserve_order = True
    # Grouping rows by symbol is one shuffle; the default hash shuffle starts aggregator
    # actors (~12 s on 2 cores for any size), the pull-based sort shuffle plain tasks (<1 s).
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
