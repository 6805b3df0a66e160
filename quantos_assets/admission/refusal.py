"""What a rule answers when it says no: a code, an HTTP status and one line for the user."""

from __future__ import annotations

from dataclasses import dataclass

# Codes a client may branch on (documented in docs/security.md and the REST reference).
NOT_OWNER = "not_owner"
TEAM_LABEL = "team_label"
NAME_COLLISION = "name_collision"
SECRETS_SCOPE = "secrets_scope"
ENTRYPOINT = "entrypoint"
READS = "reads"
ACTIVE_RUNS = "active_runs"
RATE = "rate"


@dataclass(frozen=True)
class Refusal:
    code: str
    status: int  # the HTTP status the gateway answers with
    line: str  # one line, naming what to fix
    retry_after: int | None = None  # seconds, for refusals that pass with time (quotas)

    @property
    def later(self) -> bool:
        """A quota: the same request may pass later (a job firing or a Kafka message waits)."""
        return self.retry_after is not None

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
