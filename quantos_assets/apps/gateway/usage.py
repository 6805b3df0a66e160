"""A team's load as the gateway counts it, for the admission rules' quotas."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

from sqlalchemy.engine import Connection

from quantos_assets.admission.quota_window import QuotaWindow
from quantos_assets.apps.client.graphql import DagsterAPIError
from quantos_assets.apps.gateway.active_runs import ActiveRuns
from quantos_assets.apps.gateway.auth import ApiError
from quantos_assets.stores.submission_store import SubmissionStore


@dataclass
class GatewayUsage:
    runs: ActiveRuns
    store: SubmissionStore
    quota_window: QuotaWindow
    conn: Connection | None = None  # read through the caller's snapshot (one per request)

    def within(self, conn: Connection) -> GatewayUsage:
        """The same counts read through `conn`: a request's checks share one read transaction."""
        return replace(self, conn=conn)

    def ask_dagster(self, team: str) -> None:
        """Count the team's runs in Dagster now, before the caller opens its store snapshot
        (`within`): the count is then cached for the rules, and a slow Dagster never holds a
        store connection that other teams' requests need. Errors are handled by `active_runs`."""
        with contextlib.suppress(DagsterAPIError):
            self.runs.get(team)

    def active_runs(self, team: str) -> int:
        """Queued + running runs in Dagster plus the team's accepted, not yet launched
        submissions. While Dagster is unreachable, the last count read, so submissions are
        still accepted into the launch queue (which is counted on top)."""
        try:
            in_dagster = self.runs.get(team)
        except DagsterAPIError as err:
            if not err.retryable:
                raise ApiError(err.status, str(err)) from None
            in_dagster = self.runs.last_known(team)
        return in_dagster + self.store.unlaunched(team, self.conn)

    def window_wait(self, team: str, limit: int, now: float) -> int | None:
        return self.quota_window.wait(team, limit, now, self.conn)
