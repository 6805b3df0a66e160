"""One admission policy on every path: quotas have no side door, submission ids are owned.

Against a real `dagster dev` and `quantos gateway`: what a team at its limits, or a run
launched outside the gateway with another team's submission id, can and cannot do.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from gateway_stack import Stack, gateway_stack, one_node

pytestmark = pytest.mark.e2e

TEAMS = {
    "defaults": {"secrets_scopes": [], "max_concurrent_runs": 20, "submissions_per_minute": 600},
    "teams": {
        "research": {"secrets_scopes": ["research-readonly"]},
        "execution": {"secrets_scopes": ["execution-prod"]},
        "tiny": {"submissions_per_minute": 1},
        "solo": {"max_concurrent_runs": 1},
    },
}
NOOP = "quantos_assets.tasks.noop:one_row"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("admission")
    specs = [
        one_node("adm_research", "research", NOOP),
        one_node("adm_execution", "execution", NOOP),
        one_node("adm_tiny", "tiny", NOOP),
        one_node("adm_solo_slow", "solo", "quantos_assets.tasks.control:sleep", seconds=600),
        one_node("adm_solo_job", "solo", NOOP),
    ]
    tokens = [(team, team, "submit,read") for team in ("research", "execution", "tiny", "solo")]
    with gateway_stack(root, specs, TEAMS, tokens) as made:
        yield made


def _jobs(stack: Stack, token: str) -> list[dict]:
    res = stack.call("GET", "/api/jobs", token)
    assert res.status_code == 200, res.text
    return res.json()


def test_a_team_at_its_submission_limit_cannot_schedule_jobs_instead(stack: Stack) -> None:
    """Defect 6: at its per-minute limit (429 on submit), scheduling answered 201 three times
    and three runs fired. Now the schedule endpoint draws on the same budget: 429, nothing stored."""
    first = stack.call("POST", "/api/orch/submit", "tiny", json={"spec_ref": "adm_tiny"})
    assert first.status_code == 202, first.text
    stack.wait(first.json()["submission_id"], {"SUCCESS"}, token="tiny")
    runs_before = stack.run_count()
    assert stack.call("POST", "/api/orch/submit", "tiny", json={"spec_ref": "adm_tiny"}).status_code == 429
    for _ in range(3):
        res = stack.call("POST", "/api/jobs/schedule", "tiny", json={"spec_ref": "adm_tiny"})
        assert res.status_code == 429, res.text
        assert res.json()["error"] == "team tiny reached 1 submissions per minute"
        assert 1 <= int(res.headers["Retry-After"]) <= 60
    assert _jobs(stack, "tiny") == []
    time.sleep(20)  # more than a tick of the gateway_jobs sensor: nothing fires
    assert stack.run_count() == runs_before
    # Another team is not held by tiny's budget.
    other = stack.call("POST", "/api/jobs/schedule", "research", json={"spec_ref": "adm_research", "execution_time": "2031-01-01T00:00:00+00:00"})
    assert other.status_code == 201, other.text


def test_a_job_firing_over_the_run_limit_waits_with_its_reason_then_runs(stack: Stack) -> None:
    """Each firing is admitted like a submission: over the team's max_concurrent_runs it is
    held (the job says why) and fires once the team is under its limit."""
    slow = stack.call("POST", "/api/orch/submit", "solo", json={"spec_ref": "adm_solo_slow", "runtime_params": {"submission_id": "solo-slow"}})
    assert slow.status_code == 202, slow.text
    stack.wait("solo-slow", {"STARTED"}, token="solo")
    made = stack.call("POST", "/api/jobs/schedule", "solo", json={"spec_ref": "adm_solo_job"})
    assert made.status_code == 201, made.text
    job_id = made.json()["job_id"]
    deadline = time.monotonic() + 120
    while not (job := stack.call("GET", f"/api/jobs/{job_id}", "solo").json())["note"]:
        assert time.monotonic() < deadline, job
        time.sleep(2)
    assert "waits: team solo has 1 active runs (limit 1)" in job["note"], job
    assert job["runs"] == 0 and job["status"] == "scheduled"

    assert stack.call("POST", "/api/orch/cancel/solo-slow", "solo").status_code == 200
    stack.wait("solo-slow", {"CANCELED"}, token="solo", timeout=120)
    deadline = time.monotonic() + 180
    while (job := stack.call("GET", f"/api/jobs/{job_id}", "solo").json())["status"] != "succeeded":
        assert time.monotonic() < deadline, job
        time.sleep(2)
    assert job["runs"] == 1 and job["note"] is None


def test_a_run_launched_outside_the_gateway_with_a_teams_submission_id_is_not_that_teams(stack: Stack) -> None:
    """Defect 9: a run launched outside the gateway with team research's submission id showed
    up in research's /status, and research could cancel or retry it. Status, logs, cancel and
    retry now follow only runs tagged with the submission's team."""
    res = stack.call("POST", "/api/orch/submit", "research", json={"spec_ref": "adm_research", "runtime_params": {"submission_id": "owned-1"}})
    assert res.status_code == 202, res.text
    own = stack.wait("owned-1", {"SUCCESS"})
    # Someone with Dagster access launches another team's pipeline under research's id.
    stray = stack.dagster.client().submit_job_execution(
        "adm_execution", repository_location_name="quantos", repository_name="__repository__",
        tags={"quantos/submission_id": "owned-1", "quantos/team": "execution"},
    )
    deadline = time.monotonic() + 120
    while stack.dagster.client().get_run_status(stray).value not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline
        time.sleep(1)
    status = stack.call("GET", "/api/orch/status/owned-1").json()
    assert status["run_id"] == own["run_id"] and [r["run_id"] for r in status["runs"]] == [own["run_id"]], status
    assert status["pipeline_id"] == "adm_research"
    logs = stack.call("GET", "/api/orch/logs/owned-1").json()["lines"]
    assert {line["run_id"] for line in logs} == {own["run_id"]}
    retried = stack.call("POST", "/api/orch/retry/owned-1")
    assert retried.status_code == 409 and "latest is SUCCESS" in retried.json()["error"], retried.text
