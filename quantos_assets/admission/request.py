"""What is being admitted: the action, who asks, and what the rules may look at.

A path builds one `AdmissionRequest` from what it has (a gateway request, a job about to fire,
a Kafka message, a CLI call) and hands it to `policy.admit`. Everything a rule reads is here,
so the rules stay pure and every path is judged by the same ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from quantos_assets.spec.models import DagSpec, RuntimeParams
from quantos_assets.tenancy.teams import TeamPolicy, TeamsFile, pipeline_team


class Action(str, Enum):  # noqa: UP042 (StrEnum would change str() and f-strings of members)
    SUBMIT = "submit"  # POST /api/orch/submit
    RETRY = "retry"  # POST /api/orch/retry, POST /api/jobs/{id}/retry
    SCHEDULE = "schedule"  # POST /api/jobs/schedule
    EDIT = "edit"  # PUT /api/jobs/{id}
    FIRE = "fire"  # a scheduled job's firing (the gateway_jobs sensor)
    KAFKA = "kafka"  # a submission read from Kafka (the kafka_submissions sensor)
    REGISTER = "register"  # a write to the spec registry (`quantos register`)


# Actions that start a run now (the run quotas apply) ...
RUN_ACTIONS = frozenset({Action.SUBMIT, Action.RETRY, Action.FIRE, Action.KAFKA})
# ... and those that count against a team's submissions per minute: runs, and the jobs that
# make runs (each edit too: every change is an audit record, so none may come unbounded).
RATED_ACTIONS = RUN_ACTIONS | {Action.SCHEDULE, Action.EDIT}
# Actions that may bring a new spec version into the registry.
SPEC_ACTIONS = frozenset({Action.SUBMIT, Action.SCHEDULE, Action.REGISTER})


@dataclass(frozen=True)
class Caller:
    """Who asks: a token's team, a job's team, or for Kafka the registered pipeline's team."""

    team: str
    actor: str  # token id, job id, Kafka offset, or `cli`
    admin: bool = False


class Registry(Protocol):
    """The spec registry as the rules see it."""

    def owner(self, pipeline_id: str) -> str | None:
        """The team that owns a registered pipeline (None: not registered, or no team)."""

    def ownership(self, spec: DagSpec, team: str, admin: bool) -> str | None:
        """Why `team` may not run or register this spec as it is (one line), or None."""

    def conflicts(self, spec: DagSpec) -> list[str]:
        """One line per name `spec` derives that another registered pipeline already has."""

    def pipelines(self) -> frozenset[str]:
        """The registered pipeline ids (each an Iceberg namespace of the lake)."""


class Usage(Protocol):
    """A team's current load, as the path that asks can count it."""

    def active_runs(self, team: str) -> int:
        """Queued and running runs, plus accepted runs not launched yet."""

    def window_wait(self, team: str, limit: int, now: float) -> int | None:
        """Seconds until the team's quota window holds fewer than `limit` admissions
        (None: it does now)."""


@dataclass(frozen=True)
class AdmissionRequest:
    action: Action
    caller: Caller
    teams: TeamsFile
    spec: DagSpec | None = None
    params: RuntimeParams | None = None
    registry: Registry | None = None
    usage: Usage | None = None
    now: float = field(default_factory=time.time)

    def owner(self) -> str | None:
        """The pipeline's team: the registry's record first (a submitted spec cannot
        re-label a registered pipeline), else the spec's own labels."""
        if self.spec is None:
            return None
        registered = (
            self.registry.owner(self.spec.pipeline_id) if self.registry is not None else None
        )
        return registered or pipeline_team(self.spec.labels)

    def team(self) -> str:
        """The team whose grants and quotas apply: the caller's; an admin acting on a
        pipeline is held to the pipeline owner's grants."""
        if self.caller.admin:
            return self.owner() or self.caller.team
        return self.caller.team

    def policy(self) -> TeamPolicy:
        return self.teams.policy(self.team())
