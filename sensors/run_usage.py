"""A team's load as a sensor counts it, for the admission rules' quotas.

A sensor tick requests runs that Dagster creates only after the tick, so runs requested
earlier in the same tick are counted on top of the instance's active runs, and the
gateway's accepted-but-unlaunched submissions (its store) are counted too: every path
draws on the same `max_concurrent_runs`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from quantos_assets.admission.quota_window import QuotaWindow
from quantos_assets.stores.submission_store import SubmissionStore
from resources.run_tag_keys import TAG_TEAM

ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]

_STORES: dict[str, SubmissionStore] = {}


def gateway_store(url: str) -> SubmissionStore:
    """The gateway's store (QUANTOS_GATEWAY_DB), opened once per process."""
    if url not in _STORES:
        _STORES[url] = SubmissionStore.from_url(url)
    return _STORES[url]


@dataclass
class InstanceUsage:
    instance: DagsterInstance
    store: SubmissionStore
    requested: Counter[str] = field(default_factory=Counter)  # runs requested this tick, per team

    @property
    def quota_window(self) -> QuotaWindow:
        return self.store.quota_window

    def active_runs(self, team: str) -> int:
        in_dagster = self.instance.get_runs_count(
            RunsFilter(tags={TAG_TEAM: team}, statuses=ACTIVE)
        )
        return in_dagster + self.store.unlaunched(team) + self.requested[team]

    def window_wait(self, team: str, limit: int, now: float) -> int | None:
        return self.quota_window.wait(team, limit, now)
