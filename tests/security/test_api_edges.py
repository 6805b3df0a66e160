"""The gateway's paths and edges (issue 16, defects 6, 7, 9, 10 and 11) against a real gateway
and `dagster dev`: quotas have no side door, submission ids are owned, and the API's edges.

The stack's gateway reaches Dagster through a URL with a password in it (a webserver behind a
proxy with basic auth) and has a configured public URL; further gateways point the same
setting at a dead port. Each test makes the issue's attack and asserts what the caller sees
and that nothing was stored, run or leaked.
"""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from dev_server import quantos_gateway
from gateway_stack import Stack
from security_stack import PASSWORD, PUBLIC_URL, USERINFO

pytestmark = pytest.mark.e2e

DEAD_URL = f"http://{USERINFO}@127.0.0.1:9"  # nothing listens on port 9
DEAD_SHOWN = "http://quantos:***@127.0.0.1:9"
EVIL = {
    "Host": "evil.example.net",
    "X-Forwarded-Host": "evil.example.net",
    "Forwarded": "host=evil.example.net",
}


@pytest.fixture(scope="module")
def stack(security_stack: Stack) -> Stack:
    """The suite's shared stack (tests/security_stack.py): its gateway reaches Dagster through a
    URL with a password in it and answers with a configured public URL."""
    return security_stack


@pytest.fixture(scope="module")
def dead_gateway(stack: Stack) -> Iterator[str]:
    """A second gateway on the stack's store and tokens whose Dagster URL (with the password)
    names a dead port, and without QUANTOS_PUBLIC_URL."""
    folder = stack.root / "dead_shared"
    folder.mkdir()
    with quantos_gateway(
        {**stack.env, "QUANTOS_DAGSTER_URL": DEAD_URL, "QUANTOS_PUBLIC_URL": ""}, folder
    ) as url:
        yield url


def call(
    stack: Stack, url: str, method: str, path: str, token: str = "research", **kwargs: Any
) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {stack.tokens[token]}",
        **(kwargs.pop("headers", None) or {}),
    }
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=120, **kwargs)


def _store_dump(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(conn.iterdump())


def _job_ids(stack: Stack) -> set[str]:
    with sqlite3.connect(stack.data_dir / "gateway.db") as conn:
        return {row[0] for row in conn.execute("SELECT id FROM gateway_jobs")}


def _insert_job(stack: Stack, job_id: str, team: str, pipeline_id: str, **values: Any) -> None:
    """A row as an older gateway (no bounds) or a hand edit could have left it."""
    now = time.time()
    row = {
        "id": job_id,
        "team": team,
        "actor": "old-gateway",
        "type": "pipeline",
        "pipeline_id": pipeline_id,
        "spec_sha256": "0" * 64,
        "runtime_params": "{}",
        "nodes": "[]",
        "description": "",
        "execution_time": now,
        "cron": None,
        "timezone": "UTC",
        "canceled": 0,
        "created_at": now,
        "updated_at": now,
        **values,
    }
    with sqlite3.connect(stack.data_dir / "gateway.db", timeout=30) as conn:
        conn.execute(
            f"INSERT INTO gateway_jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )


def _runs_of_job(stack: Stack, job_id: str) -> int:
    data = stack.dagster.graphql(
        "query R($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { count } } "
        "}",
        {"t": [{"key": "quantos/job_id", "value": job_id}]},
    )
    return int(data["runsOrError"]["count"])


# -- defect 7: a persistent 500 ------------------------------------------------------------------


def test_an_execution_time_out_of_bounds_is_422_and_a_bad_row_breaks_no_listing(
    stack: Stack,
) -> None:
    before = _job_ids(stack)
    for when, why in [
        ("9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59-14:00 is more than 10 years ahead"),
        ("1999-12-31T23:59:59+00:00", "is before 2000-01-01"),
        ("2030-01-01T00:00:00", "give a timezone offset"),
    ]:
        res = stack.call(
            "POST", "/api/jobs/schedule", json={"spec_ref": "edge_ok", "execution_time": when}
        )
        assert res.status_code == 422, res.text
        lines = res.json()["lines"]
        assert (
            len(lines) == 1
            and lines[0].startswith("body.execution_time: Value error, ")
            and why in lines[0]
        ), lines
    assert _job_ids(stack) == before  # refused before anything was stored

    made = stack.call(
        "POST", "/api/jobs/schedule", json={"spec_ref": "edge_ok", "description": "fires now"}
    )
    assert made.status_code == 201, made.text
    good = made.json()
    edit = stack.call(
        "PUT", f"/api/jobs/{good['job_id']}", json={"execution_time": "9999-12-31T23:59:59-14:00"}
    )
    assert edit.status_code == 422 and edit.json()["lines"][0].startswith(
        "body.execution_time: "
    ), edit.text
    assert (
        stack.call("GET", f"/api/jobs/{good['job_id']}").json()["execution_time"]
        == good["execution_time"]
    )

    # Rows an older version could have stored: year 10000, and params that are not JSON (due now).
    _insert_job(stack, "job-year10000", "research", "edge_ok", execution_time=253402350000.0)
    _insert_job(stack, "job-badjson", "execution", "edge_exec", runtime_params="{not json")
    listings = {
        who: stack.call("GET", "/api/jobs", who) for who in ("research", "execution", "admin")
    }
    assert {who: res.status_code for who, res in listings.items()} == {
        "research": 200,
        "execution": 200,
        "admin": 200,
    }
    seen = {who: {j["job_id"]: j for j in res.json()} for who, res in listings.items()}
    assert set(seen["research"]) == {good["job_id"], "job-year10000"}
    assert set(seen["execution"]) == {"job-badjson"}
    assert set(seen["admin"]) >= {good["job_id"], "job-year10000", "job-badjson"}
    year10000 = seen["research"]["job-year10000"]
    assert year10000["status"] == "invalid" and year10000["next_run_at"] is None
    assert year10000["error"] == "execution_time 253402350000.0 is not a time (epoch seconds)"
    assert seen["execution"]["job-badjson"]["error"] == "runtime_params is not a JSON dict"
    assert seen["research"][good["job_id"]]["error"] is None
    invalid = stack.call("GET", "/api/jobs", "admin", params={"status": "invalid"}).json()
    assert {j["job_id"] for j in invalid} == {"job-year10000", "job-badjson"}

    # The sensor skips the bad rows, not its tick: the good job still fires, the bad one never.
    deadline = time.monotonic() + 240
    while (current := stack.call("GET", f"/api/jobs/{good['job_id']}").json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, current
        time.sleep(0.5)
    assert current["status"] == "succeeded" and current["runs"] == 1, current
    assert _runs_of_job(stack, "job-badjson") == 0

    # Its owner can still see it and cancel it; other teams cannot touch it.
    assert stack.call("DELETE", "/api/jobs/job-year10000", "execution").status_code == 403
    canceled = stack.call("DELETE", "/api/jobs/job-year10000")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
    shown = stack.call("GET", "/api/jobs/job-year10000").json()
    assert shown["status"] == "canceled" and shown["error"] == year10000["error"]


# -- defect 10: credentials echoed ---------------------------------------------------------------


def test_a_password_in_the_dagster_url_reaches_no_answer_record_or_log(
    stack: Stack, dead_gateway: str
) -> None:
    # The live webserver behind the URL with userinfo: submissions run as usual.
    sid = "sub-edge-userinfo"
    res = stack.call(
        "POST",
        "/api/orch/submit",
        json={"spec_ref": "edge_ok", "runtime_params": {"submission_id": sid}},
    )
    assert res.status_code == 202, res.text
    assert stack.wait(sid, {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"

    # The same setting pointing at a dead port: every answer names the URL, never the password.
    jobs_before = _job_ids(stack)
    answers = [
        call(stack, dead_gateway, "GET", f"/api/orch/status/{sid}"),
        call(stack, dead_gateway, "POST", f"/api/orch/cancel/{sid}"),
        call(stack, dead_gateway, "POST", "/api/jobs/schedule", json={"spec_ref": "edge_ok"}),
    ]
    for res in answers:
        assert res.status_code == 503, res.text
        assert res.json()["error"].startswith(
            f"Dagster at {DEAD_SHOWN} is unreachable: ConnectError"
        ), res.text
    assert _job_ids(stack) == jobs_before  # the refused schedule stored nothing

    # The refused cancel is in the audit trail, redacted.
    records = [
        json.loads(line)
        for line in stack.cli("audit", "show", "--subject", sid).stdout.splitlines()
    ]
    refused = [r for r in records if r["action"] == "cancel" and r["decision"] == "rejected"]
    assert len(refused) == 1 and refused[0]["detail"].startswith(
        f"Dagster at {DEAD_SHOWN} is unreachable"
    ), records

    # A gateway with its own store accepts a submission while Dagster is down; its launch
    # threads log every retry.
    own = stack.root / "dead_own"
    own.mkdir()
    env = {**stack.env, "QUANTOS_DAGSTER_URL": DEAD_URL, "QUANTOS_DATA_DIR": str(own / "data")}
    with quantos_gateway(env, own) as url:
        queued = call(stack, url, "POST", "/api/orch/submit", json={"spec_ref": "edge_ok"})
        assert queued.status_code == 202, queued.text
        answers.append(queued)
        deadline = time.monotonic() + 60
        while "Dagster unavailable" not in (own / "gateway.log").read_text():
            assert time.monotonic() < deadline, (own / "gateway.log").read_text()
            time.sleep(0.5)
    own_log = (own / "gateway.log").read_text()
    assert f"Dagster unavailable (Dagster at {DEAD_SHOWN} is unreachable" in own_log

    places = {
        "answers": "\n".join(r.text for r in answers),
        "stack gateway log": (stack.root / "gateway.log").read_text(),
        "dead gateway log": (stack.root / "dead_shared" / "gateway.log").read_text(),
        "own-store gateway log": own_log,
        "audit trail": stack.cli("audit", "show").stdout,
        "stack store": _store_dump(stack.data_dir / "gateway.db"),
        "own store": _store_dump(own / "data" / "gateway.db"),
    }
    leaked = [where for where, text in places.items() if PASSWORD in text]
    assert not leaked, leaked


# -- defect 11: the lower ones -------------------------------------------------------------------


def test_status_url_never_follows_the_host_header(stack: Stack, dead_gateway: str) -> None:
    sid = "sub-edge-host"
    body = {"spec_ref": "edge_ok", "runtime_params": {"submission_id": sid}}
    res = stack.call("POST", "/api/orch/submit", json=body, headers=EVIL)
    assert res.status_code == 202, res.text
    assert (
        res.json()["status_url"] == f"{PUBLIC_URL}/api/orch/status/{sid}" and "evil" not in res.text
    )
    # Without QUANTOS_PUBLIC_URL, the path: re-sending the same submission answers it again.
    again = call(stack, dead_gateway, "POST", "/api/orch/submit", json=body, headers=EVIL)
    assert again.status_code == 202, again.text
    assert again.json()["status_url"] == f"/api/orch/status/{sid}" and "evil" not in again.text
    assert stack.wait(sid, {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"


def test_unparseable_bodies_and_wrong_methods_get_the_documented_status_and_body(
    stack: Stack,
) -> None:
    before = {
        s["submission_id"] for s in stack.call("GET", "/api/orch/submissions", "admin").json()
    }
    auth = {
        "Authorization": f"Bearer {stack.tokens['research']}",
        "Content-Type": "application/json",
    }

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"spec_ref": "edge_ok", "refs": {"pad": "'
        for _ in range(3):
            yield b"x" * 600_000
        yield b'"}}'

    cases = {
        "chunked over the limit": (
            httpx.post(f"{stack.url}/api/orch/submit", content=chunks(), headers=auth, timeout=60),
            413,
        ),
        "invalid UTF-8": (
            httpx.post(
                f"{stack.url}/api/orch/submit", content=b'{"spec_ref": "edge_ok\xff"}', headers=auth
            ),
            400,
        ),
        "nested 1,000 deep": (
            httpx.post(
                f"{stack.url}/api/orch/submit",
                content=b'{"spec_ref": "edge_ok", "refs": ' + b"[" * 1000 + b"]" * 1000 + b"}",
                headers=auth,
            ),
            400,
        ),
        "PATCH": (stack.call("PATCH", "/api/orch/submit"), 405),
        "OPTIONS": (stack.call("OPTIONS", "/api/jobs/job-x"), 405),
        "unknown path": (stack.call("GET", "/api/orch/nothing-here"), 404),
    }
    for name, (res, status) in cases.items():
        assert res.status_code == status, (name, res.status_code, res.text)
        body = res.json()
        assert set(body) == {"error", "lines"} and body["lines"] == [body["error"]], (name, body)
    assert (
        cases["chunked over the limit"][0].json()["error"]
        == "request body larger than 1048576 bytes"
    )
    assert (
        cases["invalid UTF-8"][0].json()["error"]
        == "request body is not UTF-8: byte 0xff at offset 21 (invalid start byte)"
    )
    assert (
        cases["nested 1,000 deep"][0]
        .json()["error"]
        .startswith("request body is nested more than 200 levels deep (at line 1 column ")
    )
    assert cases["PATCH"][0].headers["allow"] == "POST"
    assert cases["OPTIONS"][0].headers["allow"] == "DELETE, GET, PUT"
    after = {s["submission_id"] for s in stack.call("GET", "/api/orch/submissions", "admin").json()}
    assert after == before
    assert stack.call("GET", "/api/orch/submissions").status_code == 200  # the gateway carries on


def test_tokens_expire_and_say_so(stack: Stack) -> None:
    made = stack.cli("token", "create", "--team", "research", "--scopes", "read", "--ttl", "3s")
    assert made.returncode == 0 and " expires 20" in made.stderr, made.stderr
    token = made.stdout.strip()
    listing = httpx.get(
        f"{stack.url}/api/orch/submissions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert listing.status_code == 200, listing.text
    time.sleep(3.5)
    expired = httpx.get(
        f"{stack.url}/api/orch/submissions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert expired.status_code == 401, expired.text
    token_id = _token_id(made.stderr)
    assert expired.json()["error"].startswith(f"token {token_id} expired at ")
    assert expired.json()["error"].endswith(": ask for a new one (quantos token create)")
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    assert any(
        line.startswith(token_id) and " EXPIRED " in line
        for line in stack.cli("token", "list").stdout.splitlines()
    )

    # A record written before tokens expired: created 400 days ago, so past the 365-day bound.
    legacy = stack.cli("token", "create", "--team", "research", "--scopes", "read")
    legacy_id = _token_id(legacy.stderr)
    path = Path(stack.env["QUANTOS_API_TOKENS"])
    raw = json.loads(path.read_text())
    for item in raw["tokens"]:
        if item["id"] == legacy_id:
            item.pop("expires_at")
            item["created_at"] = (datetime.now(UTC) - timedelta(days=400)).isoformat(
                timespec="seconds"
            )
    path.write_text(json.dumps(raw))
    old = httpx.get(
        f"{stack.url}/api/orch/submissions",
        headers={"Authorization": f"Bearer {legacy.stdout.strip()}"},
        timeout=30,
    )
    assert old.status_code == 401 and old.json()["error"].startswith(
        f"token {legacy_id} expired at "
    ), old.text
    assert stack.call("GET", "/api/orch/submissions").status_code == 200  # other tokens unaffected

    never = stack.cli("token", "create", "--team", "research", "--scopes", "read", "--ttl", "never")
    assert never.returncode == 1 and "--ttl 'never': expected a number and a unit" in never.stderr


def _token_id(stderr: str) -> str:
    found = re.search(r"^id ([0-9a-f]{12}) ", stderr, re.MULTILINE)
    assert found, stderr
    return found.group(1)


def test_the_gateway_files_are_readable_by_their_owner_only(stack: Stack) -> None:
    files = [stack.data_dir / name for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm")]
    files.append(Path(stack.env["QUANTOS_API_TOKENS"]))
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {
        f.name: "0o600" for f in files
    }


# -- the schemathesis evidence -------------------------------------------------------------------

# A schema-valid request can still be refused for what JSON Schema cannot state: a spec's graph
# rules, the nodes of a named pipeline, an IANA zone, a time window relative to now, 30 February.
# Those are 422s with a line naming the field; schemathesis is told so, and the findings the
# schema *can* state are asserted below (`{}`, an empty cron).
SCHEMATHESIS_TOML = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def test_schemathesis_with_a_team_and_an_admin_token_finds_nothing(stack: Stack) -> None:
    openapi = httpx.get(f"{stack.url}/openapi.json", timeout=30).json()

    def valid(model: str, value: Any) -> bool:
        schema = {"$ref": f"#/components/schemas/{model}", "components": openapi["components"]}
        return jsonschema.Draft202012Validator(schema).is_valid(value)

    assert not valid("SubmitRequest", {}) and not valid("ScheduleRequest", {})
    assert not valid("SubmitRequest", {"dag_spec": {}, "spec_ref": "edge_ok"})
    assert valid("SubmitRequest", {"spec_ref": "edge_ok"}) and valid(
        "ScheduleRequest", {"dag_spec": {}, "spec_ref": None}
    )
    assert not valid("Recurrence", {"cron": ""}) and not valid("Recurrence", {"cron": "@daily"})
    assert valid("Recurrence", {"cron": "30 16 * * MON-FRI", "timezone": "America/New_York"})
    assert "to 10 years from now" in json.dumps(openapi["components"]["schemas"]["ScheduleRequest"])

    config = stack.root / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_TOML)
    before = stack.run_count()
    for token, examples in (
        ("research", "12"),
        ("admin", "6"),
    ):  # admin: the same endpoints, every team's rows
        started = time.monotonic()
        res = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(config),
                "run",
                f"{stack.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {stack.tokens[token]}",
                "--checks",
                "all",
                "--max-examples",
                examples,
                "--seed",
                "7",
                "--phases",
                "examples,coverage,fuzzing",
            ],
            capture_output=True,
            text=True,
            cwd=stack.root,
            env=stack.env,
            timeout=600,
            check=False,
        )
        assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
        print(
            f"schemathesis as {token}: {time.monotonic() - started:.0f} s; "
            f"{res.stdout.strip().splitlines()[-1]}"
        )
    assert stack.run_count() == before  # nothing the fuzzer sent was launched


# -- one admission policy on every path (defects 6 and 9) ---------------------------------------


def _jobs(stack: Stack, token: str) -> list[dict]:
    res = stack.call("GET", "/api/jobs", token)
    assert res.status_code == 200, res.text
    return res.json()


def test_a_team_at_its_submission_limit_cannot_schedule_jobs_instead(stack: Stack) -> None:
    """Defect 6: at its per-minute limit (429 on submit), scheduling answered 201 three times
    and three runs fired. Now the schedule endpoint draws on the same budget: 429, nothing
    stored."""
    first = stack.call("POST", "/api/orch/submit", "tiny", json={"spec_ref": "adm_tiny"})
    assert first.status_code == 202, first.text
    stack.wait(first.json()["submission_id"], {"SUCCESS"}, token="tiny")
    runs_before = stack.run_count()
    assert (
        stack.call("POST", "/api/orch/submit", "tiny", json={"spec_ref": "adm_tiny"}).status_code
        == 429
    )
    for _ in range(3):
        res = stack.call("POST", "/api/jobs/schedule", "tiny", json={"spec_ref": "adm_tiny"})
        assert res.status_code == 429, res.text
        assert res.json()["error"] == "team tiny reached 1 submissions per minute"
        assert 1 <= int(res.headers["Retry-After"]) <= 60
    assert _jobs(stack, "tiny") == []  # no job stored: nothing can fire
    assert stack.run_count() == runs_before
    # Another team is not held by tiny's budget.
    other = stack.call(
        "POST",
        "/api/jobs/schedule",
        "research",
        json={"spec_ref": "edge_ok", "execution_time": "2031-01-01T00:00:00+00:00"},
    )
    assert other.status_code == 201, other.text


def test_a_job_firing_over_the_run_limit_waits_with_its_reason_then_runs(stack: Stack) -> None:
    """Each firing is admitted like a submission: over the team's max_concurrent_runs it is
    held (the job says why) and fires once the team is under its limit."""
    slow = stack.call(
        "POST",
        "/api/orch/submit",
        "solo",
        json={"spec_ref": "adm_solo_slow", "runtime_params": {"submission_id": "solo-slow"}},
    )
    assert slow.status_code == 202, slow.text
    stack.wait("solo-slow", {"STARTED"}, token="solo")
    made = stack.call("POST", "/api/jobs/schedule", "solo", json={"spec_ref": "adm_solo_job"})
    assert made.status_code == 201, made.text
    job_id = made.json()["job_id"]
    deadline = time.monotonic() + 120
    while not (job := stack.call("GET", f"/api/jobs/{job_id}", "solo").json())["note"]:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert "waits: team solo has 1 active runs (limit 1)" in job["note"], job
    assert job["runs"] == 0 and job["status"] == "scheduled"

    assert stack.call("POST", "/api/orch/cancel/solo-slow", "solo").status_code == 200
    stack.wait("solo-slow", {"CANCELED"}, token="solo", timeout=120)
    deadline = time.monotonic() + 180
    while (job := stack.call("GET", f"/api/jobs/{job_id}", "solo").json())["status"] != "succeeded":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["runs"] == 1 and job["note"] is None


def test_a_run_launched_outside_the_gateway_with_a_teams_submission_id_is_not_that_teams(
    stack: Stack,
) -> None:
    """Defect 9: a run launched outside the gateway with team research's submission id showed
    up in research's /status, and research could cancel or retry it. Status, logs, cancel and
    retry now follow only runs tagged with the submission's team."""
    res = stack.call(
        "POST",
        "/api/orch/submit",
        "research",
        json={"spec_ref": "edge_ok", "runtime_params": {"submission_id": "owned-1"}},
    )
    assert res.status_code == 202, res.text
    own = stack.wait("owned-1", {"SUCCESS"})
    # Someone with Dagster access launches another team's pipeline under research's id.
    stray = stack.dagster.client().submit_job_execution(
        "edge_exec",
        repository_location_name="quantos",
        repository_name="__repository__",
        tags={"quantos/submission_id": "owned-1", "quantos/team": "execution"},
    )
    deadline = time.monotonic() + 120
    while stack.dagster.client().get_run_status(stray).value not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    status = stack.call("GET", "/api/orch/status/owned-1").json()
    assert status["run_id"] == own["run_id"] and [r["run_id"] for r in status["runs"]] == [
        own["run_id"]
    ], status
    assert status["pipeline_id"] == "edge_ok"
    logs = stack.call("GET", "/api/orch/logs/owned-1").json()["lines"]
    assert {line["run_id"] for line in logs} == {own["run_id"]}
    retried = stack.call("POST", "/api/orch/retry/owned-1")
    assert retried.status_code == 409 and "latest is SUCCESS" in retried.json()["error"], (
        retried.text
    )
