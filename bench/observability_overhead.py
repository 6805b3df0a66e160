"""Per-step time with the observability on against off, measured in the same run (issue 7).

    uv run python bench/observability_overhead.py [--nodes 20] [--rounds 8] [--interval 5]
    uv run python bench/observability_overhead.py --traces [--nodes 20] [--rounds 8]

The pipeline: a chain of --nodes trino_sql nodes (`SELECT 1 AS x`, then `SELECT x + 1 AS x
FROM` the previous node's table) through the real LakeIOManager (Iceberg tables, snapshot
ids recorded, so the lineage carries versioned datasets), run with execute_in_process on a
persistent SQLite instance. Each side has its own DAGSTER_HOME and lake:

- on: the instance's `python_logs` name NodeLogHandler (the keyed JSON log line of every
  run and node event, QUANTOS_JSON_LOGS; left out with a note if that module is absent),
  and an observer process, what the daemon and the exporter are in production, that every
  --interval seconds ticks the OpenLineage sensor (file transport) and scrapes the
  Prometheus registry of `quantos exporter`, while the runs go, on the same cores. In
  production the daemon and the exporter run elsewhere and tick rarer (sensor every 30 s,
  Prometheus every 15-60 s); the default 5 s puts a tick or two into every run.
- off: the same runs with no handler and the observer paused.

Rounds alternate on/off (on first, then off first) after one warm-up run per side. Per-step
time = run wall time / nodes. The ratio is the MEDIAN of the rounds' on/off ratios: the two
runs of a round see the same load from whatever else the machine runs (a shared 2-core box
swings per-step times 2x within minutes), and the median, not the best, keeps the
observer's cost, which lands on some runs and not on others. After the rounds the observer drains
and the script checks that the lineage is complete (START and COMPLETE for every node of every run
on the "on" side, plus the submission's two), so the ratio is of a lineage that is all there.
Prints `ratio=` (on / off) last; goal <= 1.05.

`--traces` (issue 21): traces on against off and nothing else (no JSON logs, no observer on
either side). On: the process's TracerProvider exports over OTLP/HTTP to a receiver process
on loopback (this script with `--receive`, decoding every request as Tempo would), each run
opens the `run` span as the run worker does and passes its context in the run's tags, every
node opens its `step` span, and the run's spans are flushed at its end; off: no provider
(what a profile without QUANTOS_OTLP_ENDPOINT gets). The receiver's count must come to
(nodes + 1) spans per "on" run. Measured 2026-12-07 on the shared 2-core box (load 2.5-4),
20 nodes: ratio=0.985 (12 rounds; on 119 ms, off 124 ms per step; CPU of the run process,
exporter thread included, 98.1 vs 99.9 ms), 0.943 and 1.064 (8 rounds each): the spans cost
less than the machine's noise; the run-end flush is one POST of ~21 spans. 2026-12-08 stop 33,
quiet (load 2.3-4.7), 12 rounds: ratio=0.965 (on 119.7 ms, off 123.8 ms per step; CPU 0.947).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PIPELINE = "bench_observed"
HANDLER = "quantos_assets.observability.node_logs.NodeLogHandler"
# Dagster's console logger (stderr) at ERROR on both sides: the same on each, and quiet here.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def spec_text(nodes: int) -> str:
    lines = ["version: 1", f"pipeline_id: {PIPELINE}", "labels: {team: bench}", "nodes:"]
    for i in range(nodes):
        sql = "SELECT 1 AS x" if i == 0 else f"SELECT x + 1 AS x FROM t{i - 1}"
        lines += [
            f"  - id: n{i}",
            "    kind: trino_sql",
            f'    params: {{sql: "{sql}"}}',
            f"    outs: [t{i}]",
        ]
        if i:
            lines.append(f"    ins: [t{i - 1}]")
    return "\n".join(lines) + "\n"


def json_logs_available() -> bool:
    try:
        import quantos_assets.observability.node_logs  # noqa: F401
    except ImportError:
        return False
    return True


def make_home(home: Path, json_logs: bool) -> None:
    home.mkdir(parents=True)
    text = "telemetry:\n  enabled: false\n"
    if json_logs:
        text += (
            "python_logs:\n  dagster_handler_config:\n    handlers:\n      "
            f"quantos_json:\n        class: {HANDLER}\n"
        )
    (home / "dagster.yaml").write_text(text)


# -- the observer: the daemon's lineage sensor and the exporter's scrape ------------------------


def observe(home: Path, spec: Path, events: Path, flag: Path, stop: Path, interval: float) -> None:
    """Tick the lineage sensor and scrape metrics every `interval` s while `flag` exists;
    at `stop`, drain the lineage and print how many events were sent."""
    from dagster import DagsterInstance
    from prometheus_client import generate_latest

    from quantos_assets.observability.lineage_facts import LineageNaming
    from quantos_assets.pipeline_assets import build_pipeline
    from quantos_assets.spec_rules.firm import load_spec
    from resources.lineage_client import LineageEmitter
    from resources.profile import LineageSettings, active_profile
    from sensors.openlineage import LineageIndex, evaluate_lineage

    instance = DagsterInstance.from_config(str(home))
    registry = _registry(instance)
    index = LineageIndex.of([build_pipeline(load_spec(spec), active_profile())])
    naming = LineageNaming(warehouse="file:///bench/warehouse", default_namespace="quantos")
    emitter = LineageEmitter(LineageSettings("file", file_path=events))
    cursor = evaluate_lineage(instance, None, index, naming, emitter).cursor
    generate_latest(registry)
    print("ready", flush=True)
    ticks, lineage_s, scrape_s = 0, 0.0, 0.0
    while not stop.exists():
        if flag.exists():
            t0 = time.perf_counter()
            cursor = evaluate_lineage(instance, cursor, index, naming, emitter).cursor
            t1 = time.perf_counter()
            generate_latest(registry)
            lineage_s, scrape_s, ticks = (
                lineage_s + t1 - t0,
                scrape_s + time.perf_counter() - t1,
                ticks + 1,
            )
        time.sleep(interval)
    # Runs finished within the last minute are re-read by design; drain until quiet.
    while True:
        result = evaluate_lineage(instance, cursor, index, naming, emitter)
        cursor = result.cursor
        if result.skip_reason is not None and (result.skip_reason.skip_message or "").startswith(
            "0 "
        ):
            break
    print(json.dumps({"ticks": ticks, "lineage_s": lineage_s, "scrape_s": scrape_s}), flush=True)


def _registry(instance: Any) -> Any:
    try:
        from quantos_assets.observability.metrics_registry import metrics_registry

        return metrics_registry(instance)
    except ImportError:
        from prometheus_client import CollectorRegistry

        from quantos_assets.observability.run_metrics import RunMetricsCollector

        registry = CollectorRegistry()
        registry.register(RunMetricsCollector(instance))
        return registry


# -- traces: a receiver process, and the runs with tracing on and off ------------------------------


def receive() -> None:
    """An OTLP/HTTP receiver on loopback (what Tempo is): decodes each POST to /v1/traces,
    prints its port, and at end of stdin how many spans it received."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            count[0] += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()
    print(count[0], flush=True)


def compare_traces(nodes: int, rounds: int) -> None:
    """The same chain run with traces on (a run span and a span per step, exported over OTLP
    to the receiver process, flushed at the run's end as the run worker does) and off."""
    from dagster import DagsterInstance

    from definitions.assemble import definitions_for
    from quantos_assets.observability.traces import run_span, start_tracing, use_tracing
    from quantos_assets.pipeline_assets import build_pipeline
    from quantos_assets.spec_rules.firm import load_spec
    from resources.profile import TraceSettings, active_profile
    from resources.run_tag_keys import TAG_RUN_TRACEPARENT

    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receive"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    port = int(receiver.stdout.readline())
    tracing = start_tracing(TraceSettings(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        spec = tmp / f"{PIPELINE}.yaml"
        spec.write_text(spec_text(nodes))
        pipeline = build_pipeline(load_spec(spec), active_profile({"QUANTOS_ENV": "local"}))
        sides: dict[str, dict[str, Any]] = {}
        for side in ("on", "off"):
            home = tmp / side / "home"
            make_home(home, json_logs=False)
            profile = active_profile(
                {
                    "QUANTOS_ENV": "local",
                    "QUANTOS_DATA_DIR": str(tmp / side / "data"),
                    "QUANTOS_DBT": "off",
                    "QUANTOS_LINEAGE": "off",
                }
            )
            sides[side] = {
                "instance": DagsterInstance.from_config(str(home)),
                "job": definitions_for([pipeline], profile).resolve_job_def(PIPELINE),
                "times": [],
                "cpu": [],
            }
        log_sink = tmp / "stdout.log"

        def run(side: str) -> float:
            s = sides[side]
            use_tracing(tracing if side == "on" else None)
            with open(log_sink, "a") as sink, contextlib.redirect_stdout(sink):
                t0, c0 = time.perf_counter(), time.process_time()
                with run_span("bench", PIPELINE, {}) as traceparent:
                    tags = {TAG_RUN_TRACEPARENT: traceparent} if traceparent else {}
                    result = s["job"].execute_in_process(
                        instance=s["instance"], run_config=QUIET, tags=tags
                    )
                elapsed = time.perf_counter() - t0
                # the exporter's thread included: it is this process's CPU
                s["cpu"].append((time.process_time() - c0) / nodes)
            if not result.success:
                raise SystemExit(f"{side}: the run failed")
            return elapsed / nodes

        run("on"), run("off")  # warm-up
        for i in range(rounds):
            for side in ("on", "off") if i % 2 == 0 else ("off", "on"):
                sides[side]["times"].append(run(side))
    tracing.close()
    out, _ = receiver.communicate("", timeout=60)
    received = int(out.strip().splitlines()[-1])
    expected = (rounds + 1) * (nodes + 1)
    ratios = [a / b for a, b in zip(sides["on"]["times"], sides["off"]["times"], strict=True)]
    print(f"nodes={nodes} rounds={rounds}; traces exported over OTLP/HTTP to a loopback receiver")
    print(
        f"spans: {received} received for {rounds + 1} runs "
        f"({'complete' if received == expected else f'INCOMPLETE, expected {expected}'})"
    )
    for side in ("on", "off"):
        times = sides[side]["times"]
        print(
            f"{side:>3}: per step median {1000 * statistics.median(times):.1f} ms, "
            f"best {1000 * min(times):.1f} ms, worst {1000 * max(times):.1f} ms"
        )
    cpu_on, cpu_off = (statistics.median(sides[k]["cpu"]) for k in ("on", "off"))
    print(
        f"CPU of the run process per step (exporter thread included): on {1000 * cpu_on:.1f} ms,"
        f" off {1000 * cpu_off:.1f} ms, ratio {cpu_on / cpu_off:.3f}"
    )
    print(f"round ratios: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"ratio={statistics.median(ratios):.3f}")


# -- the runs ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument(
        "--json-logs",
        choices=("on", "off"),
        default="on",
        help="off: the on side without the JSON log handler (lineage + metrics alone)",
    )
    ap.add_argument(
        "--traces",
        action="store_true",
        help="compare traces on (OTLP to a receiver process on loopback) with off, nothing else",
    )
    ap.add_argument("--observe", nargs=5, metavar=("HOME", "SPEC", "EVENTS", "FLAG", "STOP"))
    ap.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.receive:
        receive()
        return
    if args.traces:
        compare_traces(args.nodes, args.rounds)
        return
    if args.observe:
        home, spec, events, flag, stop = (Path(p) for p in args.observe)
        observe(home, spec, events, flag, stop, args.interval)
        return

    from dagster import DagsterInstance

    from definitions.assemble import definitions_for
    from quantos_assets.pipeline_assets import build_pipeline
    from quantos_assets.spec_rules.firm import load_spec
    from resources.profile import active_profile

    with_json = args.json_logs == "on" and json_logs_available()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        spec = tmp / f"{PIPELINE}.yaml"
        spec.write_text(spec_text(args.nodes))
        pipeline = build_pipeline(load_spec(spec), active_profile({"QUANTOS_ENV": "local"}))
        sides: dict[str, dict[str, Any]] = {}
        for side in ("on", "off"):
            home = tmp / side / "home"
            make_home(home, json_logs=(side == "on" and with_json))
            profile = active_profile(
                {
                    "QUANTOS_ENV": "local",
                    "QUANTOS_DATA_DIR": str(tmp / side / "data"),
                    "QUANTOS_DBT": "off",
                    "QUANTOS_LINEAGE": "off",
                }
            )
            sides[side] = {
                "instance": DagsterInstance.from_config(str(home)),
                "job": definitions_for([pipeline], profile).resolve_job_def(PIPELINE),
                "times": [],
                "cpu": [],
            }
        events, flag, stop = tmp / "lineage.jsonl", tmp / "observing", tmp / "stop"
        observer = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--interval",
                str(args.interval),
                "--observe",
                str(tmp / "on" / "home"),
                str(spec),
                str(events),
                str(flag),
                str(stop),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "QUANTOS_DBT": "off"},
        )
        assert observer.stdout is not None
        if observer.stdout.readline().strip() != "ready":
            raise SystemExit("observer did not start")

        log_sink = tmp / "stdout.log"

        def run(side: str) -> float:
            s = sides[side]
            if side == "on":
                flag.touch()
            with open(log_sink, "a") as sink, contextlib.redirect_stdout(sink):
                t0, c0 = time.perf_counter(), time.process_time()
                result = s["job"].execute_in_process(instance=s["instance"], run_config=QUIET)
                elapsed = time.perf_counter() - t0
                s["cpu"].append((time.process_time() - c0) / args.nodes)
            if side == "on":
                flag.unlink()
            if not result.success:
                raise SystemExit(f"{side}: the run failed")
            return elapsed / args.nodes

        run("on"), run("off")  # warm-up: tables created, caches filled
        for i in range(args.rounds):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for side in order:
                sides[side]["times"].append(run(side))

        stop.touch()
        out, _ = observer.communicate(timeout=300)
        observed = json.loads(out.strip().splitlines()[-1])
        sent = [json.loads(line) for line in events.read_text().splitlines()]
        runs_on = args.rounds + 1
        node_events = [e for e in sent if e["job"]["name"].startswith(f"{PIPELINE}.")]
        expected = 2 * args.nodes * runs_on
        complete = len(node_events) == expected and len(sent) == expected + 2 * runs_on
        json_lines = sum(
            1 for line in log_sink.read_text().splitlines() if line.startswith('{"timestamp"')
        )

        ratios = [a / b for a, b in zip(sides["on"]["times"], sides["off"]["times"], strict=True)]
        ticks = observed["ticks"]
        print(
            f"nodes={args.nodes} rounds={args.rounds} interval={args.interval}s; observer during "
            "the on runs: "
            f"{ticks} ticks, lineage {1000 * observed['lineage_s'] / max(ticks, 1):.0f} ms/tick, "
            f"metrics scrape {1000 * observed['scrape_s'] / max(ticks, 1):.0f} ms/scrape"
        )
        print(
            f"json logs: {'on' if with_json else 'off (--json-logs off, or node_logs.py absent)'}"
            f", {json_lines} keyed lines written on the on side"
        )
        print(
            f"lineage: {len(sent)} events for {runs_on} runs "
            f"({'complete' if complete else f'INCOMPLETE, expected {expected} node events'})"
        )
        for side in ("on", "off"):
            times = sides[side]["times"]
            print(
                f"{side:>3}: per step median {1000 * statistics.median(times):.1f} ms, "
                f"best {1000 * min(times):.1f} ms, worst {1000 * max(times):.1f} ms"
            )
        cpu_on, cpu_off = (statistics.median(sides[k]["cpu"][1:]) for k in ("on", "off"))
        print(
            "CPU of the run process per step (what the steps themselves pay; the observer is "
            f"another process): on {1000 * cpu_on:.1f} ms, off {1000 * cpu_off:.1f} ms, ratio "
            f"{cpu_on / cpu_off:.3f}"
        )
        print(f"round ratios: {' '.join(f'{r:.3f}' for r in ratios)}")
        print(f"ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
