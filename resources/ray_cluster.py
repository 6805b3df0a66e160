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


class RayResource(ConfigurableResource):
    """Connects to Ray once per process; `address=None` starts a local Ray."""

    address: str | None = Field(
        default=None, description="Ray address ('auto', 'ray://host:10001'); None starts a local Ray."
    )
    num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs of the local Ray (None: all cores); ignored with an address."
    )
    namespace: str | None = Field(default=None, description="Ray namespace for named actors and jobs.")

    @property
    def is_local(self) -> bool:
        return self.address is None

    def init(self) -> Any:
        """Return the `ray` module, initialised (idempotent within a process)."""
        if self.is_local:
            for key, value in _LOCAL_ENV.items():
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
        return ray

    def cpus(self) -> float:
        """CPUs the connected cluster offers (for sizing tasks so they never wait forever)."""
        ray = self.init()
        return float(ray.cluster_resources().get("CPU", 1.0))
