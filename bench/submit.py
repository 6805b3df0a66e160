"""Submission API throughput and latency against Dagster's own launchRun, same stack, same run.

A real `dagster dev` and `quantos gateway` on loopback. 32 concurrent clients each send
--per-client submissions:
  baseline  Dagster's launchPipelineExecution mutation, straight to the webserver
  gateway   POST /api/orch/submit (token auth, team quota checks, store, audit; 202 once
            committed to the gateway's launch queue, launched in Dagster by its dispatcher)
Throughput runs are held in the queue (a tag concurrency limit of 0) so the measurement
is of accepting submissions, not of running them. After each gateway round the bench also
waits until every accepted submission has its Dagster run and prints that drain rate: the
rate at which the queue empties into Dagster (bounded by the same webserver as the baseline). Then
--latency-samples submissions are sent one at a time, each after the previous run finished (an idle
queue), and timed until Dagster reports the run STARTED (goal p95 <= 5 s).
Prints ratio= last: gateway submissions/s over launchRun/s (goal >= 1.0).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from dev_server import dagster_dev, quantos_gateway

from quantos_assets.apps.client.graphql import CLIENT_SUBMIT_PIPELINE_RUN_MUTATION

SPEC = {
    "version": 1,
    "pipeline_id": "bench_submit",
    "labels": {"team": "bench"},
    "nodes": [
        {
            "id": "one",
            "kind": "python_task",
            "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
            "outs": ["one"],
        }
    ],
}
HOLD = {"key": "quantos/label.bench", "value": "hold"}  # = runtime label bench: hold
DAGSTER_YAML = """
telemetry: {enabled: false}
run_coordinator:  # as deploy/dagster.local.yaml
  module: quantos_assets.apps.launcher.run_coordinator
  class: WarmingQueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    dequeue_interval_seconds: 1  # as deploy/dagster.local.yaml
    tag_concurrency_limits:
      - {key: quantos/label.bench, value: hold, limit: 0}
run_launcher:  # as deploy/dagster.local.yaml
  module: quantos_assets.apps.launcher.run_launcher
  class: WarmRunLauncher
  config: {spares: 1, preload: {module: definitions.definitions, attribute: defs}}
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def hammer(call, clients: int, per_client: int) -> tuple[float, list[float], int]:
    """(accepted per second, latencies, failures) of clients x per_client calls."""

    def worker(c: int) -> list[tuple[bool, float]]:
        out = []
        for i in range(per_client):
            t0 = time.perf_counter()
            ok = call(c, i)
            out.append((ok, time.perf_counter() - t0))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for chunk in pool.map(worker, range(clients)) for r in chunk]
    elapsed = time.perf_counter() - start
    accepted = sum(1 for ok, _ in results if ok)
    return accepted / elapsed, [lat for _, lat in results], len(results) - accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=8)
    parser.add_argument("--latency-samples", type=int, default=8)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    specs = root / "specs"
    specs.mkdir()
    (specs / "bench_submit.yaml").write_text(yaml.safe_dump(SPEC))
    teams = root / "teams.yaml"
    teams.write_text(
        yaml.safe_dump(
            {"teams": {"bench": {"max_concurrent_runs": 100000, "submissions_per_minute": 1000000}}}
        )
    )
    # The shipped local defaults (dbt models loaded, one process per step), not the tests' fast
    # mode.
    shipped = {"QUANTOS_DBT": "on", "QUANTOS_LOCAL_EXECUTOR": "multiprocess"}
    with dagster_dev(root, specs, extra_env=shipped, dagster_yaml=DAGSTER_YAML) as srv:
        env = {
            **srv.env,
            "QUANTOS_DAGSTER_URL": f"http://127.0.0.1:{srv.port}",
            "QUANTOS_API_TOKENS": str(root / "tokens.json"),
            "QUANTOS_GATEWAY_DB": f"sqlite:///{root / 'gateway.db'}",
            "QUANTOS_TEAMS": str(teams),
        }
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "quantos_assets.apps.cli.main",
                "token",
                "create",
                "--team",
                "bench",
                "--scopes",
                "submit,read",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        token = made.stdout.strip()
        with quantos_gateway(env, root) as url:
            http = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=64))
            auth = {"Authorization": f"Bearer {token}"}
            graphql = f"http://127.0.0.1:{srv.port}/graphql"
            selector = {
                "repositoryLocationName": "quantos",
                "repositoryName": "__repository__",
                "pipelineName": "bench_submit",
            }

            def launch_run(c: int, i: int) -> bool:
                params = {
                    "selector": selector,
                    "runConfigData": {},
                    "executionMetadata": {
                        "tags": [HOLD, {"key": "quantos/submission_id", "value": f"base-{c}-{i}"}]
                    },
                }
                r = http.post(
                    graphql,
                    json={
                        "query": CLIENT_SUBMIT_PIPELINE_RUN_MUTATION,
                        "variables": {"executionParams": params},
                    },
                )
                return r.status_code == 200 and "run" in r.json()["data"]["launchPipelineExecution"]

            def submit(c: int, i: int, hold: bool = True) -> bool:
                body = {
                    "spec_ref": "bench_submit",
                    "runtime_params": {
                        "submission_id": f"gw-{c}-{i}",
                        "labels": {"bench": "hold"} if hold else {},
                    },
                }
                r = http.post(f"{url}/api/orch/submit", json=body, headers=auth)
                return r.status_code == 202

            # warm both paths (code location, connection pools, gateway registry cache)
            launch_run(-1, 0)
            submit(-1, 0)

            def drained(t0: float) -> float:
                """Seconds from t0 until no accepted submission is waiting for its run."""
                while True:
                    rows = http.get(
                        f"{url}/api/orch/submissions", params={"limit": 1000}, headers=auth
                    ).json()
                    waiting = [r for r in rows if r["state"] in ("queued", "launching")]
                    failed = [r for r in rows if r["state"] == "failed"]
                    assert not failed, failed[0]
                    if not waiting:
                        return time.perf_counter() - t0
                    time.sleep(0.2)

            rounds = []
            drains = []
            for r in range(2):  # alternate, best of two each
                rounds.append(("baseline", hammer(launch_run, args.clients, args.per_client)))
                t0 = time.perf_counter()
                rounds.append(
                    (
                        "gateway",
                        hammer(
                            lambda c, i, r=r: submit(c + 1000 * r, i), args.clients, args.per_client
                        ),
                    )
                )
                drains.append(args.clients * args.per_client / drained(t0))
            best = {
                name: max((res for n, res in rounds if n == name), key=lambda x: x[0])
                for name in ("baseline", "gateway")
            }
            for name, (rate, lat, failed) in best.items():
                print(
                    f"{name:<9} {rate:8.1f} accepted/s  p50 {1000 * statistics.median(lat):7.1f} "
                    f"ms  p99 {1000 * pct(lat, 0.99):7.1f} ms  failed {failed}  ({args.clients} "
                    f"clients x {args.per_client})"
                )

            print(
                f"gateway   {max(drains):8.1f} launched in Dagster/s (accept + drain the launch "
                f"queue, best of {len(drains)})"
            )

            # Cancel the held runs: the latency phase measures an idle queue, as a compiler
            # submitting to a quiet deployment sees it.
            queued = http.post(
                graphql,
                json={
                    "query": (
                        "{ runsOrError(filter: {statuses: [QUEUED]}) { ... on Runs { results { "
                        "runId } } } }"
                    )
                },
            )
            held = [r["runId"] for r in queued.json()["data"]["runsOrError"]["results"]]
            for i in range(0, len(held), 100):
                http.post(
                    graphql,
                    json={
                        "query": (
                            "mutation($ids: [String!]!) { terminateRuns(runIds: $ids) { "
                            "__typename } }"
                        ),
                        "variables": {"ids": held[i : i + 100]},
                    },
                )
            started: list[float] = []
            for i in range(args.latency_samples):
                t0 = time.perf_counter()
                resp = http.post(
                    f"{url}/api/orch/submit",
                    json={
                        "spec_ref": "bench_submit",
                        "runtime_params": {"submission_id": f"lat-{i}"},
                    },
                    headers=auth,
                )
                assert resp.status_code == 202, resp.text
                while True:
                    status = http.get(f"{url}/api/orch/status/lat-{i}", headers=auth).json()[
                        "status"
                    ]
                    if status in ("STARTED", "SUCCESS", "FAILURE"):
                        started.append(time.perf_counter() - t0)
                        break
                    time.sleep(0.1)
                # the next sample meets an idle queue, as a quiet deployment would
                while status not in ("SUCCESS", "FAILURE", "CANCELED"):
                    time.sleep(0.5)
                    status = http.get(f"{url}/api/orch/status/lat-{i}", headers=auth).json()[
                        "status"
                    ]
                time.sleep(1.0)
            print(
                f"submit -> run started: p50 {statistics.median(started):.2f} s  p95 "
                f"{pct(started, 0.95):.2f} s  (goal <= 5 s; n={len(started)})"
            )
            # held runs would otherwise start when the bench's instance is reused: none is
            print(f"ratio={best['gateway'][0] / best['baseline'][0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
