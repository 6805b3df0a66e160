"""A team's active runs (queued + running), counted in Dagster at most once a second.

The count is a GraphQL query against the same webserver that takes the launches; asking
it before every submission would halve what the gateway can accept. Between queries the
gateway adds the runs it launched itself, so the count only errs by runs that *finished*
in the last second (it over-counts, never lets a team past its limit by its own bursts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ActiveRuns:
    def __init__(
        self,
        count: Callable[[str], int],
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, int]] = {}

    def get(self, team: str) -> int:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(team)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        value = self._count(team)
        with self._lock:
            self._cache[team] = (now, value)
        return value

    def last_known(self, team: str) -> int:
        """The last count read (0 if none): used while Dagster is unreachable, when no run
        can be launched anyway and the gateway's own queue is counted on top."""
        with self._lock:
            cached = self._cache.get(team)
        return cached[1] if cached is not None else 0

    def launched(self, team: str) -> None:
        with self._lock:
            cached = self._cache.get(team)
            if cached is not None:
                self._cache[team] = (cached[0], cached[1] + 1)
