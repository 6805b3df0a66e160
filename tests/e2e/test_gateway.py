"""The submission gateway end to end: a real `dagster dev` and `quantos gateway` on loopback.

What a compiler and an operator see: a submitted spec runs and its status, logs and
lineage are right; another team can neither see nor touch it; quotas answer 429; bad
input is a 4xx that says what to fix and leaves nothing behind; cancel and retry work;
the audit chain verifies and catches an edited row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dev_server import quantos_gateway
from gateway_stack import Stack, gateway_stack, one_node
from otlp_receiver import ReceivedSpan, Receiver, otlp_receiver

pytestmark = pytest.mark.e2e

SMALL: dict[str, Any] = {
    "version": 1,
    "pipeline_id": "gw_small",
    "labels": {"team": "research"},
    "nodes": [
        {
            "id": "rows",
            "kind": "python_task",
            "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
            "outs": ["rows"],
        },
        {
            "id": "total",
            "kind": "trino_sql",
            "params": {"sql": "SELECT count(*) AS n FROM rows"},
            "ins": ["rows"],
            "outs": ["total"],
        },
    ],
}


TEAMS = {
    "defaults": {"secrets_scopes": [], "max_concurrent_runs": 20, "submissions_per_minute": 600},
    "teams": {
        "research": {
            "secrets_scopes": ["research-readonly"],
            "max_concurrent_runs": 20,
            "submissions_per_minute": 600,
        },
        "execution": {
            "secrets_scopes": ["execution-prod"],
            "max_concurrent_runs": 20,
            "submissions_per_minute": 600,
        },
        "tiny": {"secrets_scopes": [], "max_concurrent_runs": 20, "submissions_per_minute": 1},
        "frozen": {"secrets_scopes": [], "max_concurrent_runs": 0, "submissions_per_minute": 600},
    },
}


@pytest.fixture(scope="module")
def collector() -> Iterator[Receiver]:
    """Where the stack's gateway, run workers and steps send their spans (QUANTOS_OTLP_ENDPOINT)."""
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: Receiver) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("gateway")
    # Registered before start: submitting the same spec must not reload the location.
    specs = [
        one_node(
            "gw_flaky",
            "research",
            "quantos_assets.tasks.control:fail_until",
            flag=str(root / "flag"),
        ),
        one_node("gw_slow", "research", "quantos_assets.tasks.control:sleep", seconds=300),
        one_node("gw_tiny", "tiny", "quantos_assets.tasks.noop:one_row"),
        one_node("gw_frozen", "frozen", "quantos_assets.tasks.noop:one_row"),
        one_node(
            "gw_job",
            "research",
            "quantos_assets.tasks.control:fail_until",
            flag=str(root / "job_flag"),
        ),
    ]
    tokens = [
        ("research", "research", "submit,read"),
        ("research_ro", "research", "read"),
        ("execution", "execution", "submit,read"),
        ("tiny", "tiny", "submit,read"),
        ("frozen", "frozen", "submit,read"),
    ]
    traced = {"QUANTOS_OTLP_ENDPOINT": collector.url}
    with gateway_stack(root, specs, TEAMS, tokens, extra_env=traced) as made:
        yield made


def test_submit_then_status_logs_and_lineage(stack: Stack) -> None:
    body = {
        "dag_spec": SMALL,
        "runtime_params": {"submission_id": "sub-small-1", "labels": {"version": "v1"}},
        "refs": {"git": "abc123"},
    }
    res = stack.call("POST", "/api/orch/submit", json=body)
    assert res.status_code == 202, res.text
    accepted = res.json()
    assert accepted["submission_id"] == "sub-small-1" and accepted["pipeline_id"] == "gw_small"
    assert accepted["state"] in ("queued", "launching", "launched")  # committed, launched next

    status = stack.wait("sub-small-1", {"SUCCESS", "FAILURE"})
    assert status["status"] == "SUCCESS", status
    assert status["run_id"] and [r["run_id"] for r in status["runs"]] == [status["run_id"]]
    assert {s["node"]: s["status"] for s in status["steps"]} == {
        "rows": "SUCCESS",
        "total": "SUCCESS",
    }

    # The same submission again is idempotent: same run, nothing new launched.
    again = stack.call("POST", "/api/orch/submit", json=body)
    assert again.status_code == 202 and again.json()["run_id"] == status["run_id"]

    logs = stack.call("GET", "/api/orch/logs/sub-small-1", params={"node": "total"}).json()["lines"]
    assert logs and {line["node"] for line in logs} == {"total"}
    assert any("total: 1 rows" in line["message"] for line in logs), logs

    lineage = stack.call("GET", "/api/orch/lineage/sub-small-1").json()
    assets = {a["key"]: a for a in lineage["assets"]}
    assert set(assets) == {"gw_small/rows", "gw_small/total"}
    assert assets["gw_small/total"]["upstream"] == ["gw_small/rows"]
    assert assets["gw_small/rows"]["downstream"] == ["gw_small/total"]
    assert (
        isinstance(assets["gw_small/rows"]["snapshot_id"], int)
        and assets["gw_small/rows"]["rows"] == 1
    )
    read = [i for i in lineage["inputs"] if i["input"] == "rows"]
    assert read and read[0]["snapshot_id"] == assets["gw_small/rows"]["snapshot_id"]


def test_one_submission_is_one_trace_with_a_span_per_step(
    stack: Stack, collector: Receiver
) -> None:
    """Seed 000 §6: the submission's span, its run's and one per node, in one trace, with the
    ids a Tempo search needs and never a token or a params value."""
    secret_param = "s3cr3t-param-value-7731"
    body = {
        "dag_spec": SMALL,
        "runtime_params": {
            "submission_id": "sub-traced-1",
            "labels": {"version": "v1", "note": secret_param},
        },
    }
    res = stack.call("POST", "/api/orch/submit", json=body)
    assert res.status_code == 202, res.text
    assert stack.wait("sub-traced-1", {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"
    trace_id = collector.trace_of("quantos.submission_id", "sub-traced-1")
    # the submission's span, the run's and one per node (2)
    spans = collector.spans_of(trace_id, 4)
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert {k: len(v) for k, v in by_name.items()} == {"submission": 1, "run": 1, "step": 2}
    (submission,), (run,) = by_name["submission"], by_name["run"]
    assert submission.parent_id == "" and run.parent_id == submission.span_id
    assert all(step.parent_id == run.span_id for step in by_name["step"])
    assert submission.attributes == {
        "quantos.submission_id": "sub-traced-1",
        "quantos.pipeline_id": "gw_small",
        "quantos.team": "research",
    }
    assert run.attributes["quantos.run_id"] == stack.wait("sub-traced-1", {"SUCCESS"})["run_id"]
    steps = {s.attributes["quantos.node_id"]: s.attributes for s in by_name["step"]}
    assert steps["rows"]["quantos.asset_keys"] == ["gw_small/rows"]
    assert steps["total"]["quantos.kind"] == "trino_sql"
    assert {s["quantos.attempt"] for s in steps.values()} == {1}
    assert {s["quantos.submission_id"] for s in steps.values()} == {"sub-traced-1"}
    # No token nor params value in any span the collector received, in any attribute.
    sent = b"".join(collector.bodies)
    for secret in [*stack.tokens.values(), secret_param]:
        assert secret.encode() not in sent


def test_an_unreachable_collector_fails_no_submission(stack: Stack) -> None:
    """A gateway whose collector is a closed port accepts, launches and stops as before: the
    export fails in the span processor's thread (a logged warning), never in the request.
    (A run's and its steps' spans to a closed port: tests/integration/test_traces.py.)"""
    closed = {**stack.env, "QUANTOS_OTLP_ENDPOINT": "http://127.0.0.1:9"}  # nothing on port 9
    (stack.root / "no-collector").mkdir()
    auth = {"Authorization": f"Bearer {stack.tokens['research']}"}
    with quantos_gateway(closed, stack.root / "no-collector") as url:
        res = httpx.post(
            f"{url}/api/orch/submit",
            json={"dag_spec": SMALL, "runtime_params": {"submission_id": "sub-no-collector"}},
            headers=auth,
            timeout=60,
        )
        assert res.status_code == 202, res.text
        body = stack.wait("sub-no-collector", {"SUCCESS", "FAILURE"})
        assert body["status"] == "SUCCESS", body
        stopping = time.monotonic()
    # At its stop it exported the submission's span (not dropped it): the export's failure is
    # a warning in its log, bounded by QUANTOS_OTLP_TIMEOUT (2 s).
    assert time.monotonic() - stopping < 10
    log = (stack.root / "no-collector" / "gateway.log").read_text()
    assert "exporting spans batch" in log and "Traceback" not in log, log


def test_other_teams_are_refused(stack: Stack) -> None:
    for method, path in [
        ("GET", "/api/orch/status/sub-small-1"),
        ("GET", "/api/orch/logs/sub-small-1"),
        ("GET", "/api/orch/lineage/sub-small-1"),
        ("POST", "/api/orch/cancel/sub-small-1"),
        ("POST", "/api/orch/retry/sub-small-1"),
    ]:
        res = stack.call(method, path, "execution")
        assert res.status_code == 403, (method, path, res.text)
        assert "another team" in res.json()["error"]
    # Nor may they run research's pipeline, or use a secret scope not granted to them.
    res = stack.call("POST", "/api/orch/submit", "execution", json={"spec_ref": "gw_flaky"})
    assert res.status_code == 403 and "belongs to team research" in res.json()["error"]
    res = stack.call(
        "POST",
        "/api/orch/submit",
        json={"spec_ref": "gw_flaky", "runtime_params": {"secrets_scope": ["execution-prod"]}},
    )
    assert res.status_code == 403 and "execution-prod" in res.json()["error"]
    # A read-only token cannot submit.
    res = stack.call("POST", "/api/orch/submit", "research_ro", json={"spec_ref": "gw_flaky"})
    assert res.status_code == 403 and "'submit' scope" in res.json()["error"]
    assert stack.call("GET", "/api/orch/status/sub-small-1", "research_ro").status_code == 200


def test_quotas_answer_429_with_retry_after(stack: Stack) -> None:
    first = stack.call("POST", "/api/orch/submit", "tiny", json={"spec_ref": "gw_tiny"})
    assert first.status_code == 202, first.text
    second = stack.call("POST", "/api/orch/submit", "tiny", json={"spec_ref": "gw_tiny"})
    assert second.status_code == 429 and "1 submissions per minute" in second.json()["error"]
    assert 1 <= int(second.headers["Retry-After"]) <= 60
    frozen = stack.call("POST", "/api/orch/submit", "frozen", json={"spec_ref": "gw_frozen"})
    assert frozen.status_code == 429 and "active runs (limit 0)" in frozen.json()["error"]


def _launch_queue_drained(stack: Stack, timeout: float = 120) -> None:
    """Wait until every accepted submission has its run (launches are asynchronous)."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{Path(stack.env['QUANTOS_DATA_DIR']) / 'gateway.db'}")
    deadline = time.monotonic() + timeout
    query = sa.text(
        "SELECT count(*) FROM gateway_submissions WHERE state IN ('queued', 'launching')"
    )
    while True:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() == 0:
                return
        assert time.monotonic() < deadline, "the gateway's launch queue did not drain"
        time.sleep(0.5)


def test_bad_input_is_a_4xx_and_leaves_nothing(stack: Stack) -> None:
    _launch_queue_drained(stack)  # earlier tests' submissions are launched, not counted as ours
    before_runs = stack.run_count()
    before_subs = len(stack.call("GET", "/api/orch/submissions").json())
    bad_spec = {
        **SMALL,
        "pipeline_id": "gw_bad",
        "nodes": [{**SMALL["nodes"][0], "kind": "pyhton_task"}],
    }
    cases = [
        (
            stack.call(
                "POST",
                "/api/orch/submit",
                content=b'{"dag_spec": ',
                headers={"Content-Type": "application/json"},
            ),
            400,
            "not valid JSON",
        ),
        (stack.call("POST", "/api/orch/submit", json={"dag_spec": bad_spec}), 422, "nodes[0].kind"),
        (
            stack.call("POST", "/api/orch/submit", json={"spec_ref": "no_such_pipeline"}),
            404,
            "unknown pipeline",
        ),
        (
            stack.call(
                "POST", "/api/orch/submit", json={"spec_ref": "gw_flaky", "dag_spec": SMALL}
            ),
            422,
            "exactly one",
        ),
        (
            stack.call(
                "POST",
                "/api/orch/submit",
                json={"spec_ref": "gw_flaky", "runtime_params": {"priority": "urgent"}},
            ),
            422,
            "priority",
        ),
        (
            stack.call(
                "POST", "/api/orch/submit", json={"spec_ref": "gw_flaky", "nodes": ["nope"]}
            ),
            422,
            "not in pipeline",
        ),
        (
            stack.call(
                "POST",
                "/api/orch/submit",
                content=b"x" * (2 << 20),
                headers={"Content-Type": "application/json"},
            ),
            413,
            "larger than",
        ),
        (
            stack.call("POST", "/api/orch/submit", None, json={"spec_ref": "gw_flaky"}),
            401,
            "missing bearer token",
        ),
        (
            stack.call(
                "POST", "/api/orch/submit", "qos_not-a-token", json={"spec_ref": "gw_flaky"}
            ),
            401,
            "invalid or revoked",
        ),
        (stack.call("GET", "/api/orch/status/never-submitted"), 404, "no submission"),
    ]
    for res, code, text in cases:
        assert res.status_code == code, (code, res.status_code, res.text)
        body = res.json()
        assert text in body["error"] + " ".join(body.get("lines", [])), (text, body)
    assert stack.run_count() == before_runs
    assert len(stack.call("GET", "/api/orch/submissions").json()) == before_subs
    assert not (Path(stack.env["QUANTOS_SPECS_DIR"]) / "gw_bad.json").exists()


def test_retry_from_failure_then_cancel(stack: Stack) -> None:
    res = stack.call(
        "POST",
        "/api/orch/submit",
        json={"spec_ref": "gw_flaky", "runtime_params": {"submission_id": "sub-flaky-1"}},
    )
    assert res.status_code == 202, res.text
    failed = stack.wait("sub-flaky-1", {"SUCCESS", "FAILURE"})
    assert failed["status"] == "FAILURE"
    assert stack.call("POST", "/api/orch/cancel/sub-flaky-1").status_code == 409  # nothing running
    (stack.root / "flag").touch()
    retried = stack.call("POST", "/api/orch/retry/sub-flaky-1")
    assert retried.status_code == 200, retried.text
    deadline = time.monotonic() + 240
    while True:
        done = stack.call("GET", "/api/orch/status/sub-flaky-1").json()
        if done["run_id"] == retried.json()["run_id"] and done["status"] in ("SUCCESS", "FAILURE"):
            break
        assert time.monotonic() < deadline, done
        time.sleep(0.5)
    assert done["status"] == "SUCCESS" and len(done["runs"]) == 2

    res = stack.call(
        "POST",
        "/api/orch/submit",
        json={"spec_ref": "gw_slow", "runtime_params": {"submission_id": "sub-slow-1"}},
    )
    assert res.status_code == 202
    stack.wait("sub-slow-1", {"STARTED"})
    assert stack.call("POST", "/api/orch/cancel/sub-slow-1").status_code == 200
    assert (
        stack.wait("sub-slow-1", {"CANCELED", "FAILURE", "SUCCESS"}, timeout=120)["status"]
        == "CANCELED"
    )


def test_resending_a_submission_that_never_ran_says_why(stack: Stack) -> None:
    """After LAUNCH_FAILED, or a cancel before the launch, the same submission again is a 409
    that says what happened to it and what to do, not 'already used by another submission'.
    The launch fails for real: this gateway writes specs where the code location does not look."""
    misplaced = stack.root / "misplaced"
    (misplaced / "specs").mkdir(parents=True)
    env = {**stack.env, "QUANTOS_SPECS_DIR": str(misplaced / "specs")}
    sid = "sub-misplaced"
    body = {
        "dag_spec": {**SMALL, "pipeline_id": "gw_misplaced"},
        "runtime_params": {"submission_id": sid},
    }
    with quantos_gateway(env, misplaced) as url:
        auth = {"Authorization": f"Bearer {stack.tokens['research']}"}
        assert (
            httpx.post(f"{url}/api/orch/submit", json=body, headers=auth, timeout=120).status_code
            == 202
        )
        failed = stack.wait(sid, {"LAUNCH_FAILED", "QUEUED", "STARTED", "SUCCESS"})
        assert (
            failed["status"] == "LAUNCH_FAILED"
            and "reloaded without job 'gw_misplaced'" in failed["error"]
        ), failed

        again = httpx.post(f"{url}/api/orch/submit", json=body, headers=auth, timeout=120)
        assert again.status_code == 409, again.text
        assert again.json()["error"] == (
            f"submission {sid} failed to launch ({failed['error']}): "
            f"retry it with POST /api/orch/retry/{sid} or use a new submission_id"
        )
        assert stack.call("POST", f"/api/orch/cancel/{sid}").status_code == 200
        again = httpx.post(f"{url}/api/orch/submit", json=body, headers=auth, timeout=120)
        assert again.status_code == 409
        assert (
            again.json()["error"]
            == f"submission {sid} was canceled before its launch: use a new submission_id"
        )
        # Another submission under the same id is what 'already used' is for.
        other = {**body, "runtime_params": {"submission_id": sid, "priority": "high"}}
        clash = httpx.post(f"{url}/api/orch/submit", json=other, headers=auth, timeout=120)
        assert clash.status_code == 409
        assert (
            clash.json()["error"] == f"submission_id '{sid}' is already used by another submission"
        )


def test_scheduled_jobs_fire_through_dagster_and_can_be_listed_edited_canceled_retried(
    stack: Stack,
) -> None:
    """Seed 003 §5 against the live stack: a one-off job is fired by the code location's
    gateway_jobs sensor; a recurring one is edited and canceled; a failed job is retried."""
    soon = {
        "type": "training",
        "spec_ref": "gw_job",
        "description": "nightly retrain",
        "runtime_params": {"labels": {"version": "v3"}},
    }
    made = stack.call("POST", "/api/jobs/schedule", json=soon)
    assert made.status_code == 201, made.text
    job = made.json()
    assert job["status"] == "scheduled" and job["type"] == "training" and job["recurrence"] is None

    later = {
        "type": "reporting",
        "spec_ref": "gw_job",
        "description": "month-end report",
        "execution_time": "2031-01-01T00:00:00+00:00",
        "recurrence": {"cron": "30 16 * * 1-5", "timezone": "America/New_York"},
    }
    recurring = stack.call("POST", "/api/jobs/schedule", json=later).json()
    assert recurring["next_run_at"] == "2031-01-01T21:30:00+00:00"  # Wed 16:30 New York

    deadline = time.monotonic() + 240
    while True:  # the sensor (every 15 s) fires it; the run fails until the flag exists
        current = stack.call("GET", f"/api/jobs/{job['job_id']}").json()
        if current["status"] == "failed":
            break
        assert time.monotonic() < deadline, current
        time.sleep(0.5)
    assert current["runs"] == 1 and current["next_run_at"] is None

    listed = stack.call("GET", "/api/jobs", params={"sort": "type", "order": "asc"}).json()
    assert [j["type"] for j in listed] == ["reporting", "training"]
    assert [
        j["job_id"] for j in stack.call("GET", "/api/jobs", params={"status": "failed"}).json()
    ] == [job["job_id"]]
    assert [
        j["job_id"] for j in stack.call("GET", "/api/jobs", params={"search": "MONTH-END"}).json()
    ] == [recurring["job_id"]]
    assert stack.call("GET", "/api/jobs", "execution").json() == []
    assert stack.call("GET", f"/api/jobs/{job['job_id']}", "execution").status_code == 403

    # Retry the failed job after fixing its cause: re-executed from failure.
    assert stack.call("POST", f"/api/jobs/{recurring['job_id']}/retry").status_code == 409
    (stack.root / "job_flag").touch()
    retried = stack.call("POST", f"/api/jobs/{job['job_id']}/retry")
    assert retried.status_code == 200, retried.text
    deadline = time.monotonic() + 240
    while (current := stack.call("GET", f"/api/jobs/{job['job_id']}").json())[
        "status"
    ] != "succeeded":
        assert (
            current["status"] != "failed"
            or current["last_run"]["run_id"] != retried.json()["run_id"]
        ), current
        assert time.monotonic() < deadline, current
        time.sleep(0.5)
    assert current["runs"] == 2

    # Edit the recurring job, then cancel it.
    edited = stack.call(
        "PUT",
        f"/api/jobs/{recurring['job_id']}",
        json={
            "recurrence": {"cron": "0 9 * * 1", "timezone": "Europe/London"},
            "description": "weekly",
        },
    )
    assert edited.status_code == 200, edited.text
    assert (
        edited.json()["next_run_at"] == "2031-01-06T09:00:00+00:00"
        and edited.json()["description"] == "weekly"
    )
    bad = stack.call(
        "PUT", f"/api/jobs/{recurring['job_id']}", json={"recurrence": {"cron": "every day"}}
    )
    assert bad.status_code == 422 and "not a valid cron string" in " ".join(bad.json()["lines"])
    canceled = stack.call("DELETE", f"/api/jobs/{recurring['job_id']}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert stack.call("GET", f"/api/jobs/{recurring['job_id']}").json()["status"] == "canceled"
    assert (
        stack.call("PUT", f"/api/jobs/{recurring['job_id']}", json={"description": "x"}).status_code
        == 409
    )


def test_audit_chain_verifies_and_catches_an_edited_row(stack: Stack) -> None:
    records = [json.loads(line) for line in stack.cli("audit", "show").stdout.splitlines()]
    decisions = {(r["action"], r["subject"], r["decision"]) for r in records}
    assert ("submit", "sub-small-1", "accepted") in decisions
    assert any(
        r["action"] == "submit" and r["decision"] == "rejected" and "not granted" in r["detail"]
        for r in records
    )
    assert ("retry", "sub-flaky-1", "accepted") in decisions and (
        "cancel",
        "sub-slow-1",
        "accepted",
    ) in decisions
    assert (
        "launch",
        "sub-small-1",
        "accepted",
    ) in decisions  # the dispatcher's launch, audited too
    assert {r["action"] for r in records} >= {"schedule", "edit", "cancel", "retry"}
    ok = stack.cli("audit", "verify")
    assert ok.returncode == 0 and f"{len(records)} records" in ok.stdout, ok.stderr

    db = str(Path(stack.env["QUANTOS_DATA_DIR"]) / "gateway.db")
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(
                "UPDATE quantos_audit SET decision = 'accepted' WHERE decision = 'rejected'"
            )
        conn.execute("DROP TRIGGER quantos_audit_no_update")
        seq = conn.execute(
            "SELECT min(seq) FROM quantos_audit WHERE decision = 'rejected'"
        ).fetchone()[0]
        conn.execute("UPDATE quantos_audit SET decision = 'accepted' WHERE seq = ?", (seq,))
    broken = stack.cli("audit", "verify")
    assert broken.returncode == 1
    assert f"BROKEN at record {seq}: its content was changed" in broken.stderr


def test_accepted_while_dagster_is_down_then_launched_by_a_running_gateway(stack: Stack) -> None:
    """The launch queue is the gateway's store: a submission accepted while the webserver is
    unreachable waits (status ACCEPTED, with its launch attempts and their error), survives
    that gateway stopping, and is launched by the gateway still running on the same store as
    soon as the stopped one's claim lapses (at once on a clean stop; within a lease after a
    kill: tests/security/test_launch_queue.py). Nothing edits the store by hand."""
    dead = {**stack.env, "QUANTOS_DAGSTER_URL": "http://127.0.0.1:9"}  # nothing listens on port 9
    (stack.root / "down").mkdir()
    auth = {"Authorization": f"Bearer {stack.tokens['research']}"}
    with quantos_gateway(dead, stack.root / "down") as url:
        res = httpx.post(
            f"{url}/api/orch/submit",
            json={"spec_ref": "gw_tiny", "runtime_params": {"submission_id": "sub-while-down"}},
            headers=auth,
            timeout=60,
        )
        # research cannot run tiny's pipeline: refused before anything is queued
        assert res.status_code == 403, res.text
        res = httpx.post(
            f"{url}/api/orch/submit",
            json={
                "dag_spec": {**SMALL, "pipeline_id": "gw_late"},
                "runtime_params": {"submission_id": "sub-while-down"},
            },
            headers=auth,
            timeout=60,
        )
        assert res.status_code == 202, res.text
        deadline = time.monotonic() + 30
        while (
            status := httpx.get(
                f"{url}/api/orch/status/sub-while-down", headers=auth, timeout=30
            ).json()
        )["attempts"] < 1:
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["status"] == "ACCEPTED" and status["run_id"] is None, status
        assert "127.0.0.1:9 is unreachable" in status["last_error"], status
        held_by = _claim("sub-while-down", stack)[0]
    stopped = time.monotonic()
    # A clean stop lets its claim lapse at once: the stack's own gateway (same store, the right
    # URL) takes it over at its next sweep (a third of the 15 s lease), not a lease later.
    while (claim := _claim("sub-while-down", stack)) == (held_by, "launching"):
        assert time.monotonic() - stopped < 9, claim  # a lapse by lease alone: 10-15 s
        time.sleep(0.25)
    body = stack.wait("sub-while-down", {"SUCCESS", "FAILURE"})
    assert body["status"] == "SUCCESS" and len(body["runs"]) == 1, body


def _claim(submission_id: str, stack: Stack) -> tuple[str | None, str]:
    """(owner, state) of a submission in the stack's gateway store."""
    with sqlite3.connect(Path(stack.env["QUANTOS_DATA_DIR"]) / "gateway.db") as conn:
        owner, state = conn.execute(
            "SELECT owner, state FROM gateway_submissions WHERE id = ?", (submission_id,)
        ).fetchone()
    return owner, state
