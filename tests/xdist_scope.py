"""How `make test` deals the suite to its xdist workers: file by file (`--dist loadfile`),
except that each folder of SHARED_STACK_DIRS goes to one worker whole, and first.

The security modules share one session-scoped gateway + `dagster dev` (security_stack.py).
Dealt file by file they landed on both workers, and each worker started a stack of its own
(~15 s of CPU to start, then its daemon and webserver idling for the rest of the run). Whole,
they are the largest unit of the suite (~4 minutes of a worker): dealt in collection order
(after e2e and integration) one worker was still on them 2.5 minutes after the other finished.
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

# Folders (as in a test's node id) whose modules share a session-scoped stack.
SHARED_STACK_DIRS = ("tests/security/",)


class SharedStackScheduling(LoadFileScheduling):
    """LoadFileScheduling with each of SHARED_STACK_DIRS as one work unit, dealt first."""

    def _split_scope(self, nodeid: str) -> str:
        for folder in SHARED_STACK_DIRS:
            if nodeid.startswith(folder):
                return folder
        return super()._split_scope(nodeid)

    def _assign_work_unit(self, node: WorkerController) -> None:
        for folder in reversed(SHARED_STACK_DIRS):
            if folder in self.workqueue:
                self.workqueue.move_to_end(folder, last=False)
        super()._assign_work_unit(node)
