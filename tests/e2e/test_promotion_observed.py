"""Issue 7's done-when, on a real `dagster dev`: the gated example model reaches prod, and the
lineage, metrics and logs of that run are all there, each read the way its user reads it
(the OpenLineage file a Marquez would ingest, a Prometheus scrape, `quantos logs`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dev_server import REPO, Server, dagster_dev, free_port, stop, tail
from otlp_receiver import Receiver, otlp_receiver
from prometheus_client.parser import text_string_to_metric_families

from quantos_assets.apps.client.graphql import DagsterAPI

pytestmark = pytest.mark.e2e

PIPELINE = "xs_momentum_v1"
SUBMISSION = "sub-promo-e2e"
NODES = {"market_data", "features", "universe", "train_model", "backtest"}


@dataclass
class Promoted:
    srv: Server
    run_id: str
    lineage_file: Path
    collector: Receiver


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Promoted]:
    with otlp_receiver() as collector:
        yield from _promoted(tmp_path_factory, collector)


def _promoted(tmp_path_factory: pytest.TempPathFactory, collector: Receiver) -> Iterator[Promoted]:
    root = tmp_path_factory.mktemp("promotion")
    specs = root / "specs"
    specs.mkdir()
    shutil.copy(REPO / "specs" / "xs_momentum_backtest.yaml", specs)
    lineage = root / "lineage.jsonl"
    # The shipped executor (forkserver: each step a process forked from one that loaded the
    # location), not the other stacks' in-process shortcut: the one full run the UI way.
    env = {
        "QUANTOS_LINEAGE": "file",
        "QUANTOS_LINEAGE_FILE": str(lineage),
        "QUANTOS_LOCAL_EXECUTOR": "forkserver",
        "QUANTOS_OTLP_ENDPOINT": collector.url,
    }
    with dagster_dev(root, specs, extra_env=env) as srv:
        api = DagsterAPI(f"http://127.0.0.1:{srv.port}")
        run_id = api.launch(
            PIPELINE, {"quantos/submission_id": SUBMISSION, "quantos/team": "research"}
        )
        deadline = time.monotonic() + 420
        while (run := api.run(run_id))["status"] not in ("SUCCESS", "FAILURE", "CANCELED"):
            assert time.monotonic() < deadline, f"run still {run['status']}:\n{tail(srv.log)}"
            time.sleep(0.5)
        assert run["status"] == "SUCCESS", tail(srv.log)
        yield Promoted(srv, run_id, lineage, collector)


def test_the_model_reaches_prod_through_its_gate(promoted: Promoted) -> None:
    data = promoted.srv.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { stepStats { stepKey status } } } "
        "}",
        {"id": promoted.run_id},
    )
    steps = {s["stepKey"]: s["status"] for s in data["runOrError"]["stepStats"]}
    assert steps.get(f"{PIPELINE}__gate") == "SUCCESS", steps
    promoted_keys = [k for k in steps if "promoted" in k and "prod" in k]
    assert promoted_keys and all(steps[k] == "SUCCESS" for k in promoted_keys), steps


def test_a_run_launched_outside_the_gateway_is_its_own_trace_with_a_span_per_step(
    promoted: Promoted,
) -> None:
    """No submission span to hang under: the run's span is the trace's root, and each step's
    span, in its own forkserver process, finds it through the run's tags."""
    collector = promoted.collector
    trace_id = collector.trace_of("quantos.run_id", promoted.run_id)
    # the run's span and one per node (the gate's check and stages are not nodes)
    spans = collector.spans_of(trace_id, 1 + len(NODES))
    (run,) = [s for s in spans if s.name == "run"]
    steps = [s for s in spans if s.name == "step"]
    assert run.parent_id == "" and run.attributes["quantos.submission_id"] == SUBMISSION
    assert all(s.parent_id == run.span_id for s in steps)
    assert sorted(s.attributes["quantos.node_id"] for s in steps) == sorted(NODES)
    # each step ran (and exported its span) in a process of its own
    assert run.resource["process.pid"] not in {s.resource["process.pid"] for s in steps}


def test_its_logs_are_keyed_by_submission_pipeline_and_node(promoted: Promoted) -> None:
    env = {**promoted.srv.env, "QUANTOS_DAGSTER_URL": f"http://127.0.0.1:{promoted.srv.port}"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantos_assets.apps.cli.main",
            "logs",
            SUBMISSION,
            "--node",
            "train_model",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert lines and {line["node_id"] for line in lines} == {"train_model"}
    assert {line["submission_id"] for line in lines} == {SUBMISSION}
    assert {line["pipeline_id"] for line in lines} == {PIPELINE}


def test_its_metrics_are_scraped(promoted: Promoted) -> None:
    port = free_port()
    log = promoted.srv.home.parent / "exporter.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quantos_assets.apps.cli.main", "exporter", "--port", str(port)],
            cwd=REPO,
            env=promoted.srv.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, tail(log)
                time.sleep(0.5)
                continue
            break
    finally:
        stop(proc)
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    runs = [s for s in samples if s.name == "quantos_runs" and s.labels.get("pipeline") == PIPELINE]
    assert any(s.labels["status"] == "SUCCESS" and s.value >= 1 for s in runs), runs
    steps = {
        s.labels.get("node")
        for s in samples
        if s.name == "quantos_step_duration_seconds_count" and s.labels.get("pipeline") == PIPELINE
    }
    assert steps >= NODES, steps


def test_its_lineage_maps_each_node_with_the_submission_as_parent(promoted: Promoted) -> None:
    deadline = time.monotonic() + 150  # the lineage sensor ticks every 30 s in the daemon
    while True:
        events = []
        if promoted.lineage_file.exists():
            events = [
                json.loads(line)
                for line in promoted.lineage_file.read_text().splitlines()
                if line.strip()
            ]
        complete = {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"}
        if {f"{PIPELINE}.{node}" for node in NODES} <= complete and any(
            ".promoted.prod" in j for j in complete
        ):
            break
        assert time.monotonic() < deadline, sorted(complete)
        time.sleep(0.5)
    node_events = [e for e in events if e["job"]["name"] in {f"{PIPELINE}.{n}" for n in NODES}]
    parents = {e["run"]["facets"]["parent"]["run"]["runId"] for e in node_events}
    assert len(parents) == 1  # one submission, the parent of every node's run
    trained = next(
        e
        for e in node_events
        if e["job"]["name"] == f"{PIPELINE}.train_model" and e["eventType"] == "COMPLETE"
    )
    versions = [
        o["facets"]["version"]["datasetVersion"]
        for o in trained["outputs"]
        if "version" in o.get("facets", {})
    ]
    assert any(len(v) == 64 and all(c in "0123456789abcdef" for c in v) for v in versions), trained[
        "outputs"
    ]  # sha256
    assert {e["job"]["namespace"] for e in node_events} == {"research"}  # the submission's team
