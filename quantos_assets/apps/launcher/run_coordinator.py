"""Dagster's QueuedRunCoordinator, plus one thing at the daemon's start: wake the launcher.

Dagster creates an instance's run launcher the first time something asks for it, and in
the daemon that is the first launch, so the WarmRunLauncher's preloaded code location would
load only then and the first run after `make run` would start cold. The queue daemon asks
for the run coordinator at its first iteration: this coordinator then asks for the
launcher, which starts loading it (only in the daemon, see run_launcher._in_daemon).
"""

from __future__ import annotations

from dagster import DagsterInstance
from dagster._core.run_coordinator import QueuedRunCoordinator

from quantos_assets.apps.launcher.run_launcher import in_daemon


class WarmingQueuedRunCoordinator(QueuedRunCoordinator):
    def register_instance(self, instance: DagsterInstance) -> None:
        super().register_instance(instance)
        if in_daemon():
            _ = instance.run_launcher  # created and registered: it starts loading the location now
