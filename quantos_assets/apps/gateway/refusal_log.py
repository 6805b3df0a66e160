"""Refused requests in the audit trail, bounded in size and in number.

A refusal costs its caller nothing (no quota is spent), and the trail is append-only: kept
whole, 25 refused requests with 900 KB of `refs` each grew the store by 31 MB. So a refusal
is recorded as the sha256 and byte size of what was sent (enough to match it against a
request someone kept), with its one-line reason capped (resources/audit_log.py), and at most
`per_minute` refusals per team and gateway process are recorded one by one; past that they
are counted, and the count is recorded once the minute is over (at the team's next refusal).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resources.audit_log import AuditLog, content_digest

REFUSALS_PER_MINUTE = 60
WINDOW_SECONDS = 60.0
REFUSED = "rejected"


@dataclass
class _Window:
    start: float
    recorded: int = 0
    suppressed: int = 0


class RefusalLog:
    def __init__(
        self,
        audit: AuditLog,
        per_minute: int = REFUSALS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def refused(
        self,
        *,
        actor: str,
        team: str,
        action: str,
        subject: str,
        detail: str,
        spec_sha256: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> None:
        """Append the refusal (its request as digest + size), unless the team's minute is full."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(team)
            missed = 0
            if window is None or now - window.start >= WINDOW_SECONDS:
                missed = window.suppressed if window is not None else 0
                window = self._windows[team] = _Window(start=now)
            record = window.recorded < self.per_minute
            if record:
                window.recorded += 1
            else:
                window.suppressed += 1
            first_suppressed = window.suppressed == 1 and not record
        if missed:
            self.audit.append(
                actor=actor,
                team=team,
                action="refusals",
                subject=team,
                decision="counted",
                detail=(
                    f"{missed} more refusals of team {team} in a minute were counted, not "
                    "recorded one by one "
                    f"(limit {self.per_minute} a minute)"
                ),
            )
        if first_suppressed:
            self.audit.append(
                actor=actor,
                team=team,
                action="refusals",
                subject=team,
                decision="counted",
                detail=(
                    f"team {team} passed {self.per_minute} refusals in a minute: further ones are "
                    "counted until the minute is over"
                ),
            )
        if record:
            self.audit.append(
                actor=actor,
                team=team,
                action=action,
                subject=subject,
                spec_sha256=spec_sha256,
                params={"request": content_digest(request)} if request is not None else None,
                decision=REFUSED,
                detail=detail,
            )
