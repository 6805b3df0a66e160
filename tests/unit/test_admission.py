"""The admission policy: each rule on its own, and the order in which they speak.

The rules are pure; the registry and usage here are in-memory stand-ins of the protocols that
the gateway, the sensors and the CLI implement over the real registry and stores (exercised
end to end in tests/security/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from quantos_assets.admission.policy import POLICY, admit
from quantos_assets.admission.quota_window import quota_wait
from quantos_assets.admission.request import Action, AdmissionRequest, Caller
from quantos_assets.apps.client.submissions import parse_params, parse_spec
from quantos_assets.spec.models import DagSpec
from quantos_assets.tenancy.teams import TeamsFile

TEAMS = TeamsFile.model_validate(
    {
        "defaults": {"secrets_scopes": [], "max_concurrent_runs": 5, "submissions_per_minute": 10},
        "teams": {
            "research": {
                "secrets_scopes": ["market-data"],
                "max_concurrent_runs": 2,
                "submissions_per_minute": 3,
            },
            "execution": {"secrets_scopes": ["execution-prod"]},
        },
    }
)


def _spec(pipeline_id: str = "alpha", team: str | None = None) -> DagSpec:
    raw: dict = {
        "version": 1,
        "pipeline_id": pipeline_id,
        "nodes": [
            {"id": "n", "kind": "trino_sql", "params": {"sql": "select 1 as x"}, "outs": ["x"]}
        ],
    }
    if team:
        raw["labels"] = {"team": team}
    return parse_spec(raw).spec


@dataclass
class Registry:
    owners: dict[str, str] = field(default_factory=dict)
    clashes: list[str] = field(default_factory=list)

    def owner(self, pipeline_id: str) -> str | None:
        return self.owners.get(pipeline_id)

    def ownership(self, spec: DagSpec, team: str, admin: bool) -> str | None:
        owner = self.owners.get(spec.pipeline_id) or spec.labels.get("team")
        if owner is None or owner == team or admin:
            return None
        return f"pipeline '{spec.pipeline_id}' belongs to team {owner}"

    def conflicts(self, spec: DagSpec) -> list[str]:
        return list(self.clashes)


@dataclass
class Usage:
    active: int = 0
    times: Sequence[float] = ()

    def active_runs(self, team: str) -> int:
        return self.active

    def window_wait(self, team: str, limit: int, now: float) -> int | None:
        return quota_wait(self.times, limit, now)


def _request(
    action: Action = Action.SUBMIT, team: str = "research", admin: bool = False, **kw: object
) -> AdmissionRequest:
    params = parse_params({"submission_id": "s1", **kw.pop("params", {})})  # type: ignore[dict-item]
    base: dict = {"spec": _spec(), "registry": Registry(), "usage": Usage(), "now": 1000.0}
    base.update(kw)
    return AdmissionRequest(
        action=action, caller=Caller(team, "tok", admin), teams=TEAMS, params=params, **base
    )


def test_a_clean_request_is_admitted() -> None:
    assert admit(_request()) is None


def test_the_registrys_owner_decides_who_runs_or_replaces_a_pipeline() -> None:
    req = _request(
        team="execution",
        spec=_spec(team="execution"),
        registry=Registry(owners={"alpha": "research"}),
    )
    refused = admit(req)
    assert refused is not None and (refused.code, refused.status) == ("not_owner", 403)
    assert refused.line == "pipeline 'alpha' belongs to team research"
    assert (
        admit(
            _request(team="execution", admin=True, registry=Registry(owners={"alpha": "research"}))
        )
        is None
    )


def test_runs_cannot_be_tagged_as_another_teams() -> None:
    refused = admit(_request(params={"labels": {"team": "execution"}}))
    assert refused is not None and refused.code == "team_label" and refused.status == 403


def test_secrets_scopes_must_be_granted_and_an_admin_is_held_to_the_owners_grants() -> None:
    refused = admit(_request(params={"secrets_scope": ["execution-prod"]}))
    assert refused is not None and refused.code == "secrets_scope"
    assert "['execution-prod'] is not granted to team research" in refused.line
    owned = Registry(owners={"alpha": "research"})
    as_admin = admit(
        _request(
            team="ops", admin=True, registry=owned, params={"secrets_scope": ["execution-prod"]}
        )
    )
    assert as_admin is not None and "not granted to team research" in as_admin.line
    assert (
        admit(
            _request(
                team="ops", admin=True, registry=owned, params={"secrets_scope": ["market-data"]}
            )
        )
        is None
    )


def test_name_collisions_are_a_409_for_actions_that_bring_a_spec() -> None:
    clash = Registry(clashes=["op 'rt_a__b__c' is already defined by pipeline 'rt_a'"])
    refused = admit(_request(registry=clash))
    assert refused is not None and (refused.code, refused.status) == ("name_collision", 409)
    assert admit(_request(Action.FIRE, registry=clash)) is None  # a firing brings no new spec


@pytest.mark.parametrize("action", [Action.SUBMIT, Action.RETRY, Action.FIRE, Action.KAFKA])
def test_run_making_actions_wait_at_the_active_run_limit(action: Action) -> None:
    refused = admit(_request(action, usage=Usage(active=2)))
    assert refused is not None and refused.code == "active_runs" and refused.later
    assert refused.line == "team research has 2 active runs (limit 2)" and refused.headers() == {
        "Retry-After": "10"
    }
    assert admit(_request(action, usage=Usage(active=1))) is None


@pytest.mark.parametrize("action", [Action.SCHEDULE, Action.EDIT])
def test_job_changes_count_against_the_per_minute_budget_but_not_the_run_limit(
    action: Action,
) -> None:
    full = Usage(active=99, times=[950.0, 960.0, 990.0])
    refused = admit(_request(action, usage=full))
    assert refused is not None and refused.code == "rate"
    assert refused.retry_after == 10  # the oldest of the last 3 (950) leaves the window at 1010
    assert admit(_request(action, usage=Usage(active=99, times=[950.0]))) is None
    assert admit(_request(Action.REGISTER, usage=full)) is None  # a registry write makes no run


def test_the_first_rule_that_refuses_speaks() -> None:
    # Not the owner AND over quota: told about ownership, not asked to wait.
    req = _request(
        team="execution", registry=Registry(owners={"alpha": "research"}), usage=Usage(active=99)
    )
    refused = admit(req)
    assert refused is not None and refused.code == "not_owner"
    assert [type(r).__name__ for r in POLICY][-2:] == ["ActiveRuns", "SubmissionRate"]


def test_an_entrypoint_outside_the_pipeline_teams_modules_is_refused_even_for_an_admin() -> None:
    shell = parse_spec(
        {
            "version": 1,
            "pipeline_id": "alpha",
            "labels": {"team": "research"},
            "nodes": [
                {
                    "id": "n",
                    "kind": "python_task",
                    "params": {"entrypoint": "subprocess:getoutput", "cmd": "id"},
                    "outs": ["x"],
                }
            ],
        }
    ).spec
    for admin in (False, True):
        refused = admit(_request(spec=shell, admin=admin))
        assert refused is not None and (refused.code, refused.status) == ("entrypoint", 403)
        assert refused.line.startswith(
            "nodes[0].params.entrypoint: 'subprocess:getoutput' is not allowed: team research"
        )
