"""How `make test` deals the suite to its xdist workers: file by file (`--dist loadfile`),
except that each folder of SHARED_STACK_DIRS goes to one worker whole.

The security modules share one session-scoped gateway + `dagster dev` (security_stack.py).
Dealt file by file they landed on both workers, and each worker started a stack of its own
(~15 s of CPU to start, then its daemon and webserver idling for the rest of the run).
"""

from __future__ import annotations

from xdist.scheduler import LoadFileScheduling

# Folders (as in a test's node id) whose modules share a session-scoped stack.
SHARED_STACK_DIRS = ("tests/security/",)


class SharedStackScheduling(LoadFileScheduling):
    """LoadFileScheduling with each of SHARED_STACK_DIRS as a single work unit."""

    def _split_scope(self, nodeid: str) -> str:
        for folder in SHARED_STACK_DIRS:
            if nodeid.startswith(folder):
                return folder
        return super()._split_scope(nodeid)
