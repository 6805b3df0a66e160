"""The rules of admission, each small and about one thing.

A rule names the actions it judges and answers a `Refusal` or None. Rules are pure: what they
read is on the request (registry, usage, team policy), so a rule means the same on every path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from quantos_assets.admission import refusal as codes
from quantos_assets.admission.refusal import Refusal
from quantos_assets.admission.request import (
    RATED_ACTIONS,
    RUN_ACTIONS,
    SPEC_ACTIONS,
    Action,
    AdmissionRequest,
)
from quantos_assets.kinds.entrypoints import pipeline_entrypoint_refusals
from quantos_assets.tenancy.read_grants import namespace_takeover, pipeline_read_refusals

ALL_ACTIONS = frozenset(Action)


class Rule(ABC):
    code: ClassVar[str]
    actions: ClassVar[frozenset[Action]]

    def applies(self, request: AdmissionRequest) -> bool:
        return request.action in self.actions

    @abstractmethod
    def check(self, request: AdmissionRequest) -> Refusal | None: ...


class PipelineOwner(Rule):
    """Only the owning team (or an admin) runs, schedules or replaces a pipeline: its
    `labels.team`, else the first team that registered it, as the registry records it; a
    submitted spec cannot re-label a registered pipeline, nor label a new one for another team,
    and a pipeline placed in the registry without a team is replaced by an admin only."""

    code = codes.NOT_OWNER
    actions = ALL_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        if request.spec is None or request.registry is None:
            return None
        line = request.registry.ownership(request.spec, request.caller.team, request.caller.admin)
        return Refusal(self.code, 403, line) if line else None


class TeamLabel(Rule):
    """Runs are counted and shown by their team tag: a caller cannot tag runs as another team's."""

    code = codes.TEAM_LABEL
    actions = ALL_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        params, caller = request.params, request.caller
        claimed = params.labels.get("team") if params is not None else None
        if claimed is None or claimed == caller.team or caller.admin:
            return None
        return Refusal(
            self.code,
            403,
            f"runtime_params.labels.team is {claimed!r}, but the request is team {caller.team}'s",
        )


class UniqueNames(Rule):
    """Every name a spec derives is its own: a spec whose names another registered pipeline
    already has would make the code location fail to load for every team."""

    code = codes.NAME_COLLISION
    actions = SPEC_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        if request.spec is None or request.registry is None:
            return None
        clashes = request.registry.conflicts(request.spec)
        return Refusal(self.code, 409, clashes[0]) if clashes else None


class AllowedEntrypoints(Rule):
    """A python_task runs only an entrypoint under a module prefix its pipeline's team is
    given (deploy/teams.yaml `entrypoints`): naming `subprocess:getoutput` is running a shell.
    Admins too: the step itself refuses what this refuses (kinds/entrypoints.py)."""

    code = codes.ENTRYPOINT
    actions = ALL_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        if request.spec is None:
            return None
        refused = pipeline_entrypoint_refusals(request.spec, request.teams)
        return Refusal(self.code, 403, "; ".join(refused)) if refused else None


class GrantedReads(Rule):
    """A spec reads as external inputs only lake tables its pipeline's team is granted
    (deploy/teams.yaml `reads`), and a registered pipeline's namespace only by a grant naming
    it (tenancy/read_grants.py); and no new pipeline takes the id of a namespace granted as
    external data, which its outs would overwrite. Admins too: the code location leaves out
    the reads this refuses."""

    code = codes.READS
    actions = ALL_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        if request.spec is None:
            return None
        pid = request.spec.pipeline_id
        takeover = namespace_takeover(pid, request.teams)
        if takeover is not None and (
            request.registry is None or pid not in request.registry.pipelines()
        ):
            return Refusal(self.code, 403, f"pipeline_id: {takeover}")
        if not request.spec.external_inputs:
            return None
        pipelines = request.registry.pipelines() if request.registry is not None else frozenset()
        refused = pipeline_read_refusals(request.spec, request.teams, pipelines)
        return Refusal(self.code, 403, "; ".join(refused)) if refused else None


class GrantedScopes(Rule):
    """A run mounts only the secrets scopes deploy/teams.yaml grants its team."""

    code = codes.SECRETS_SCOPE
    actions = ALL_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        if request.params is None:
            return None
        team = request.team()
        forbidden = sorted(set(request.params.secrets_scope) - set(request.policy().secrets_scopes))
        if forbidden:
            return Refusal(
                self.code,
                403,
                f"runtime_params.secrets_scope {forbidden} is not granted to team {team} "
                "(deploy/teams.yaml)",
            )
        return None


class ActiveRuns(Rule):
    """A team's queued and running runs stay within its max_concurrent_runs."""

    code = codes.ACTIVE_RUNS
    actions = RUN_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        if request.usage is None:
            return None
        team, limit = request.team(), request.policy().max_concurrent_runs
        active = request.usage.active_runs(team)
        if active < limit:
            return None
        return Refusal(
            self.code, 429, f"team {team} has {active} active runs (limit {limit})", retry_after=10
        )


class SubmissionRate(Rule):
    """Submissions, retries, scheduled jobs and their firings share one per-minute budget."""

    code = codes.RATE
    actions = RATED_ACTIONS

    def check(self, request: AdmissionRequest) -> Refusal | None:
        if request.usage is None:
            return None
        team, limit = request.team(), request.policy().submissions_per_minute
        wait = request.usage.window_wait(team, limit, request.now)
        if wait is None:
            return None
        return Refusal(
            self.code, 429, f"team {team} reached {limit} submissions per minute", retry_after=wait
        )
