"""Keyed JSON logs as a user meets them: a pipeline run with `dagster job execute` on an instance
configured like deploy/dagster.local.yaml (steps in their own processes), each node's captured
stdout read back through Dagster's compute log manager, and `quantos logs` against a real
webserver; QUANTOS_JSON_LOGS=off leaves no JSON line behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance
from profiles import LOCAL

from definitions.assemble import definitions_for
from quantos_assets.apps.cli.main import main
from quantos_assets.observability.node_logs import LOG_FIELDS
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from dev_server import free_port, stop, tail

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = {
    "version": 1,
    "pipeline_id": "logs_demo",
    "labels": {"team": "research"},
    "nodes": [
        {
            "id": "bars",
            "kind": "trino_sql",
            "params": {"sql": "select 1 as x union all select 2"},
            "outs": ["bars"],
        },
        # Independent of bars: the two step processes run side by side.
        {"id": "total", "kind": "trino_sql", "params": {"sql": "select 3 as n"}, "outs": ["total"]},
    ],
}
SUBMISSION = "sub-logs-1"
# Events a step emits from its own process, inside the compute log capture.
STEP_EVENTS = {
    "STEP_START",
    "STEP_OUTPUT",
    "HANDLED_OUTPUT",
    "ASSET_MATERIALIZATION",
    "STEP_SUCCESS",
}


@dataclass
class Ran:
    env: dict[str, str]
    run_id: str
    worker_stdout: str


def _environment(root: Path, json_logs: str = "on") -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shipped = yaml.safe_load((REPO / "deploy" / "dagster.local.yaml").read_text())
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"telemetry": {"enabled": False}, "python_logs": shipped["python_logs"]})
    )
    specs = root / "specs"
    specs.mkdir(exist_ok=True)
    (specs / "logs_demo.yaml").write_text(yaml.safe_dump(SPEC))
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "QUANTOS_ENV": "local",
        "QUANTOS_DATA_DIR": str(root / "data"),
        "QUANTOS_SPECS_DIR": str(specs),
        "QUANTOS_DBT": "off",
        "QUANTOS_JSON_LOGS": json_logs,
    }


def _execute(env: dict[str, str]) -> tuple[str, str]:
    """`dagster job execute` of the pipeline as a submission; (run id, the run worker's stdout)."""
    done = subprocess.run(  # noqa: PLW1510 (the return code is asserted)
        [
            "dagster",
            "job",
            "execute",
            "-m",
            "definitions.definitions",
            "-a",
            "defs",
            "-j",
            "logs_demo",
            "--tags",
            json.dumps({"quantos/submission_id": SUBMISSION, "quantos/pipeline_id": "logs_demo"}),
        ],
        cwd=REPO,
        env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with _instance(env) as instance:
        [run] = instance.get_runs()
    return run.run_id, done.stdout


def _instance(env: dict[str, str]) -> DagsterInstance:
    return DagsterInstance.from_config(env["DAGSTER_HOME"])


def _captured(env: dict[str, str], run_id: str) -> dict[str, tuple[str, str]]:
    """node -> (stdout, stderr) its step process wrote, as the UI's compute log view reads them."""
    out = {}
    with _instance(env) as instance:
        for record in instance.all_logs(run_id, of_type=DagsterEventType.LOGS_CAPTURED):
            assert record.dagster_event is not None
            data = record.dagster_event.logs_captured_data
            log = instance.compute_log_manager.get_log_data([run_id, "compute_logs", data.file_key])
            step = data.step_keys[0] if len(data.step_keys) == 1 else "*"
            out[step.removeprefix("logs_demo__")] = (
                (log.stdout or b"").decode(),
                (log.stderr or b"").decode(),
            )
    return out


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    env = _environment(tmp_path_factory.mktemp("node_logs"))
    run_id, stdout = _execute(env)
    yield Ran(env, run_id, stdout)


def test_every_node_event_is_a_keyed_json_line_in_that_nodes_captured_stdout(ran: Ran) -> None:
    captured = _captured(ran.env, ran.run_id)
    assert set(captured) == {"bars", "total"}
    with _instance(ran.env) as instance:
        events = instance.all_logs(ran.run_id)
    for node, (stdout, stderr) in captured.items():
        lines = _json_lines(stdout)
        assert lines, f"{node}: no JSON line in its captured stdout:\n{stdout}"
        for line in lines:
            assert tuple(line) == LOG_FIELDS, line
            # The capture's own notice belongs to the step process, not to a node.
            where = None if line["event"] == "LOGS_CAPTURED" else node
            assert (
                line["submission_id"],
                line["pipeline_id"],
                line["node_id"],
                line["run_id"],
            ) == (SUBMISSION, "logs_demo", where, ran.run_id), line
            assert line["timestamp"].endswith("Z") and line["level"] in (
                "DEBUG",
                "INFO",
                "WARNING",
                "ERROR",
            )
        # Every event the node's step stored is one of its lines, message and all.
        step_events = [
            e.dagster_event
            for e in events
            if e.step_key == f"logs_demo__{node}"
            and e.dagster_event
            and e.dagster_event.event_type.name in STEP_EVENTS
        ]
        assert {e.event_type.name for e in step_events if e} == STEP_EVENTS
        logged = Counter((line["event"], line["message"]) for line in lines)
        expected = Counter((e.event_type.name, e.message) for e in step_events if e)
        assert expected - logged == Counter(), f"{node}: events without a line: {expected - logged}"
        # Dagster's human-readable console log stays on stderr, without JSON.
        assert "STEP_START" in stderr and not _json_lines(stderr)
    # Run-level events go to the run worker's stdout, keyed without a node.
    worker = _json_lines(ran.worker_stdout)
    start = [line for line in worker if line["event"] == "RUN_START"]
    assert start and start[0]["node_id"] is None and start[0]["submission_id"] == SUBMISSION


def test_json_logs_off_leaves_only_dagsters_own_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler stays in dagster.yaml; the switch alone silences it (here a run in one
    process)."""
    env = _environment(tmp_path, json_logs="off")
    for key in ("DAGSTER_HOME", "QUANTOS_DATA_DIR", "QUANTOS_SPECS_DIR", "QUANTOS_JSON_LOGS"):
        monkeypatch.setenv(key, env[key])
    pipeline = build_pipeline(load_spec(Path(env["QUANTOS_SPECS_DIR"]) / "logs_demo.yaml"), LOCAL)
    with _instance(env) as instance:
        result = (
            definitions_for([pipeline], active_profile())
            .resolve_job_def("logs_demo")
            .execute_in_process(instance=instance, tags={"quantos/submission_id": SUBMISSION})
        )
    assert result.success
    [(stdout, stderr)] = _captured(env, result.run_id).values()
    assert not _json_lines(stdout) and "STEP_SUCCESS" in stderr


@pytest.fixture(scope="module")
def webserver(ran: Ran) -> Iterator[str]:
    """dagster-webserver on the run's instance; `quantos logs` needs only its GraphQL."""
    port = free_port()
    log = Path(ran.env["DAGSTER_HOME"]) / "webserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-webserver"),
                "--empty-workspace",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO,
            env=ran.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"webserver did not start:\n{tail(log)}"
            )
            time.sleep(0.5)
        yield url
    finally:
        stop(proc)


def _quantos_logs(ran: Ran, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI in its own process, as a user runs it."""
    return subprocess.run(  # noqa: PLW1510 (callers assert the return code)
        [sys.executable, "-m", "quantos_assets.apps.cli.main", "logs", *args],
        cwd=REPO,
        env=ran.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same command through `main` in this process (no interpreter start-up per call)."""
    code = main(["logs", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_quantos_logs_prints_the_submissions_keyed_lines(
    ran: Ran, webserver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = _quantos_logs(ran, SUBMISSION, "--node", "total", "--dagster-url", webserver)
    assert node.returncode == 0, node.stderr
    lines = _json_lines(node.stdout)
    assert lines and all(tuple(line) == LOG_FIELDS for line in lines)
    assert {
        (line["submission_id"], line["pipeline_id"], line["node_id"], line["run_id"])
        for line in lines
    } == {(SUBMISSION, "logs_demo", "total", ran.run_id)}
    assert {line["event"] for line in lines} >= STEP_EVENTS
    # The same lines the node's step wrote to its captured stdout, from the other end.
    stepped = {
        (line["event"], line["message"])
        for line in _json_lines(_captured(ran.env, ran.run_id)["total"][0])
    }
    assert {
        (line["event"], line["message"]) for line in lines if line["event"] in STEP_EVENTS
    } <= stepped

    # Without --node: every node and the run's own events; --follow on a finished run just ends.
    code, out, err = _main(capsys, SUBMISSION, "--follow", "--dagster-url", webserver)
    assert code == 0, err
    assert {line["node_id"] for line in _json_lines(out)} == {None, "bars", "total"}


def test_quantos_logs_bad_input_is_one_line(
    ran: Ran, webserver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _main(capsys, "sub-nobody", "--dagster-url", webserver)
    assert code == 1 and err.strip() == "quantos logs: no submission 'sub-nobody'"
    code, _, err = _main(capsys, SUBMISSION, "--node", "nope", "--dagster-url", webserver)
    assert (
        code == 1
        and err.strip()
        == f"quantos logs: submission {SUBMISSION} ran no node 'nope' (it ran: bars, total)"
    )
    code, _, err = _main(capsys, SUBMISSION, "--dagster-url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is unreachable" in err, err
    code, _, err = _main(
        capsys, SUBMISSION, "--follow", "--interval", "0", "--dagster-url", webserver
    )
    assert code == 1 and err.strip() == "quantos logs: --interval must be positive, got 0"


def test_quantos_logs_into_a_closed_pipe_ends_quietly(ran: Ran, webserver: str) -> None:
    """`quantos logs SUB | head -1`: the reader is gone before the lines are written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(  # noqa: PLW1510 (the return code is asserted)
            [
                sys.executable,
                "-m",
                "quantos_assets.apps.cli.main",
                "logs",
                SUBMISSION,
                "--dagster-url",
                webserver,
            ],
            cwd=REPO,
            env=ran.env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, ""), done.stderr


def test_runs_of_the_implicit_asset_job_are_keyed_by_their_pipeline_and_team(
    tmp_path: Path,
) -> None:
    """The UI's Materialize, asset backfills and `dagster asset materialize` run Dagster's
    `__ASSET_JOB` without the pipeline or team tags: the run's own lines and `quantos_runs`
    name the pipeline of the selected assets and the team of its spec."""
    from quantos_assets.observability.run_metrics import RunMetricsCollector

    env = _environment(tmp_path)
    done = subprocess.run(  # noqa: PLW1510 (the return code is asserted)
        [
            "dagster",
            "asset",
            "materialize",
            "-m",
            "definitions.definitions",
            "-a",
            "defs",
            "--select",
            "logs_demo/bars",
        ],
        cwd=REPO,
        env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_lines = [line for line in _json_lines(done.stdout) if line["node_id"] is None]
    assert {"RUN_START", "RUN_SUCCESS"} <= {line["event"] for line in run_lines}, done.stdout[
        -2000:
    ]
    assert {line["pipeline_id"] for line in run_lines} == {"logs_demo"}

    with _instance(env) as instance:
        [run] = instance.get_runs()
        assert run.job_name == "__ASSET_JOB" and "quantos/pipeline_id" not in run.tags
        families = {
            f.name: f.samples
            for f in RunMetricsCollector(instance, Path(env["QUANTOS_SPECS_DIR"])).collect()
        }
    runs = {
        (s.labels["status"], s.labels["pipeline"], s.labels["team"]): s.value
        for s in families["quantos_runs"]
    }
    assert runs == {("SUCCESS", "logs_demo", "research"): 1}
    steps = {
        (s.labels["pipeline"], s.labels["node"]) for s in families["quantos_step_duration_seconds"]
    }
    assert steps == {("logs_demo", "bars")}
