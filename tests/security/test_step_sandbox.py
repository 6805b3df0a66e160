"""Issue 16, defects 3 and 4: a step runs only what its team may run, and sees nothing of the
machine. Against a real gateway and `dagster dev`:

- a python_task naming `subprocess:getoutput` is refused at submit (403) and nothing runs;
  the same spec placed in the registry by hand is refused by the step itself, before the
  shell starts, so it reads no token store;
- a trino_sql node on DuckDB can read no file, write none (COPY TO), fetch no URL, and a
  sql_uri outside the spec's folder is refused at submit; each failure is one line that
  echoes nothing it tried to read;
- another team's pipeline still runs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from gateway_stack import Stack
from loopback_http import QuietHandler, serve_http
from security_stack import shell_attack

pytestmark = pytest.mark.e2e

NOT_ALLOWED = (
    "nodes[0].params.entrypoint: 'subprocess:getoutput' is not allowed: team research may run "
    "entrypoints under: quantos_assets.tasks (deploy/teams.yaml entrypoints)"
)
TABLE_FUNCTION_REFUSAL = (
    "calls a table function (no files, URLs or other tables): a SQL node reads only its ins "
    "and the outs before it"
)
FAILURES = """query($runId: ID!) { logsForRun(runId: $runId, limit: 1000) { ... on EventConnection \
{ events {
  __typename ... on MessageEvent { message stepKey }
  ... on ExecutionStepFailureEvent { failureMetadata { description } error { message } } } } } }"""
RUN_STATUS = "query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"


@pytest.fixture(scope="module")
def stack(security_stack: Stack) -> Stack:
    """The suite's shared stack (tests/security_stack.py): sb_handplaced (the shell) and
    sb_other (execution's) are in its registry from the start, never through the gateway."""
    return security_stack


def _events(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    data = stack.dagster.graphql(FAILURES, {"runId": run_id})
    return list(data["logsForRun"]["events"])


def _step_failures(stack: Stack, run_id: str) -> dict[str, str]:
    """step key -> the one line its failure shows (Failure description, else the error)."""
    failures = {}
    for e in _events(stack, run_id):
        if e["__typename"] == "ExecutionStepFailureEvent":
            failures[e["stepKey"]] = (e.get("failureMetadata") or {}).get("description") or e[
                "error"
            ]["message"]
    return failures


def _everything_shown(stack: Stack, run_id: str) -> str:
    """Every message and error of the run, as the UI and `quantos logs` show them."""
    return "\n".join(
        f"{e.get('message')} {e.get('failureMetadata')} {e.get('error')}"
        for e in _events(stack, run_id)
    )


def _wait_run(stack: Stack, run_id: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = stack.dagster.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return str(status)
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.5)


def test_a_shell_entrypoint_is_refused_at_submit_and_nothing_runs(stack: Stack) -> None:
    marker = stack.root / "submitted_marker"
    runs = stack.run_count()
    body = {
        "dag_spec": shell_attack("sb_attack", marker),
        "runtime_params": {"submission_id": "sb-attack-1"},
    }
    res = stack.call("POST", "/api/orch/submit", json=body)
    assert res.status_code == 403, res.text
    assert res.json() == {"error": NOT_ALLOWED, "lines": [NOT_ALLOWED]}
    # nothing stored, registered or run
    assert stack.call("GET", "/api/orch/status/sb-attack-1").status_code == 404
    assert not (stack.specs_dir / "sb_attack.yaml").exists()
    # the hand-placed copy cannot be launched through the gateway either
    ref = stack.call(
        "POST",
        "/api/orch/submit",
        json={"spec_ref": "sb_handplaced", "runtime_params": {"submission_id": "sb-attack-2"}},
    )
    assert ref.status_code == 403 and ref.json()["error"] == NOT_ALLOWED
    assert stack.run_count() == runs
    assert not marker.exists()


def test_a_hand_placed_shell_entrypoint_is_refused_by_the_step(stack: Stack) -> None:
    """Launched past the gateway (Dagster's own API, as the Python client or the UI would):
    the step checks the allow-list itself; the shell never starts."""
    from quantos_assets.apps.client import QuantosClient
    from quantos_assets.apps.client.submissions import parse_spec

    client = QuantosClient(stack.env["QUANTOS_DAGSTER_URL"], stack.specs_dir)
    loaded = parse_spec(stack.specs_dir / "sb_handplaced.yaml")
    launched = client.submit_detailed(
        loaded, {"submission_id": "sb-hand-1", "labels": {"team": "research"}}, team="research"
    )
    assert not launched.reloaded  # the registered file itself ran
    assert _wait_run(stack, launched.run_id) == "FAILURE"
    assert _step_failures(stack, launched.run_id) == {
        "sb_handplaced__task": "sb_handplaced.task: params.entrypoint "
        + NOT_ALLOWED.split(": ", 1)[1]
    }
    assert not (stack.root / "handplaced_marker").exists(), "the shell ran"
    tokens = (stack.root / "tokens.json").read_text()
    shown = _everything_shown(stack, launched.run_id)
    assert not [
        line for line in tokens.splitlines() if len(line.strip()) > 8 and line.strip() in shown
    ]


def test_duckdb_reads_no_file_writes_none_and_fetches_no_url(stack: Stack) -> None:
    requests: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()

    written = stack.root / "copied.csv"
    hostname = Path("/etc/hostname").read_text().strip()
    with serve_http(Handler) as url:
        spec = {
            "version": 1,
            "pipeline_id": "sb_sql",
            "labels": {"team": "research"},
            "nodes": [
                {
                    "id": "host",
                    "kind": "trino_sql",
                    "params": {"sql": "SELECT * FROM read_text('/etc/hostname')"},
                    "outs": ["host"],
                },
                {
                    "id": "copy",
                    "kind": "trino_sql",
                    "params": {"sql": f"COPY (SELECT 42 AS x) TO '{written}'"},
                    "outs": ["copy"],
                },
                {
                    "id": "http",
                    "kind": "trino_sql",
                    "params": {"sql": f"SELECT * FROM read_text('{url}/x')"},
                    "outs": ["http"],
                },
            ],
        }
        res = stack.call(
            "POST",
            "/api/orch/submit",
            json={"dag_spec": spec, "runtime_params": {"submission_id": "sb-sql-1"}},
        )
        assert res.status_code == 202, res.text
        status = stack.wait("sb-sql-1", {"SUCCESS", "FAILURE"})
    assert status["status"] == "FAILURE"
    failures = _step_failures(stack, status["run_id"])
    # Table functions (read_text of a file or a URL) are refused by the runner before DuckDB
    # sees them; the DuckDB sandbox behind it refuses them too (test_kinds_sql.py).
    assert failures == {
        "sb_sql__host": f"sb_sql.host: out 'host' {TABLE_FUNCTION_REFUSAL}",
        "sb_sql__copy": (
            "sb_sql.copy: out 'copy' must be a query (SELECT, WITH, VALUES), not a COPY statement: "
            "a SQL node reads its input views and returns rows"
        ),
        "sb_sql__http": f"sb_sql.http: out 'http' {TABLE_FUNCTION_REFUSAL}",
    }
    assert not written.exists()
    assert requests == []
    assert hostname not in _everything_shown(stack, status["run_id"])


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("/etc/passwd", "'/etc/passwd' is an absolute path"),
        ("../other_team/q.sql", "'../other_team/q.sql' goes up a folder ('..')"),
    ],
)
def test_sql_uri_outside_the_spec_folder_is_refused_at_submit(
    stack: Stack, uri: str, says: str
) -> None:
    spec = {
        "version": 1,
        "pipeline_id": "sb_uri",
        "labels": {"team": "research"},
        "nodes": [{"id": "q", "kind": "trino_sql", "params": {"sql_uri": uri}, "outs": ["q"]}],
    }
    res = stack.call(
        "POST",
        "/api/orch/submit",
        json={"dag_spec": spec, "runtime_params": {"submission_id": "sb-uri-1"}},
    )
    assert res.status_code == 422, res.text
    [line] = res.json()["lines"]
    assert re.match(
        rf"dag_spec:\d+: nodes\[0\]\.params\.sql_uri: {re.escape(says)}; use a \.sql file "
        r"relative to the spec",
        line,
    ), line
    assert "root:" not in res.text
    assert stack.call("GET", "/api/orch/status/sb-uri-1").status_code == 404
    assert not (stack.specs_dir / "sb_uri.yaml").exists()


def test_a_ray_job_asking_the_shared_ray_cluster_for_thousands_of_workers_is_refused(
    stack: Stack,
) -> None:
    spec = {
        "version": 1,
        "pipeline_id": "sb_flood",
        "labels": {"team": "research"},
        "nodes": [
            {
                "id": "f",
                "kind": "python_task",
                "params": {"entrypoint": "quantos_assets.tasks.noop:run"},
                "outs": ["f"],
            },
            {
                "id": "t",
                "kind": "ray_job",
                "params": {"trainer": "mlp", "workers": 100000},
                "ins": ["f"],
                "outs": ["m"],
            },
        ],
    }
    res = stack.call(
        "POST",
        "/api/orch/submit",
        json={"dag_spec": spec, "runtime_params": {"submission_id": "sb-flood-1"}},
    )
    assert res.status_code == 422, res.text
    [line] = res.json()["lines"]
    assert "params.workers" in line and "from 1 to 64, not 100000" in line, line
    assert stack.call("GET", "/api/orch/status/sb-flood-1").status_code == 404
    assert not (stack.specs_dir / "sb_flood.yaml").exists()


def test_another_teams_pipeline_still_runs(stack: Stack) -> None:
    res = stack.call(
        "POST",
        "/api/orch/submit",
        token="execution",
        json={"spec_ref": "sb_other", "runtime_params": {"submission_id": "sb-other-1"}},
    )
    assert res.status_code == 202, res.text
    assert (
        stack.wait("sb-other-1", {"SUCCESS", "FAILURE"}, token="execution")["status"] == "SUCCESS"
    )
