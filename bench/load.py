"""Load: many runs of a 10-node spec through the queue of the embedded default, against plain
Dagster runs of the same graph in the same run.

    uv run python bench/load.py [--runs 1000] [--executor multiprocess|forkserver|in_process]

A real `dagster dev` (webserver + daemon, deploy/dagster.local.yaml: QueuedRunCoordinator
with 4 concurrent runs, the warm run launcher) serves two code locations:
  quantos   specs/ -> noop10, 10 trino_sql nodes (`SELECT 1 AS x`, node i reads node i-2),
            each written to an Iceberg table with its metadata, as every spec node is
  plain     bench/load_baseline.py, the same graph as plain @assets on DuckDB with Dagster's
            default IO manager and the same executor
`--runs` runs of each are submitted interleaved (launchRun), so both sides meet the same
queue. Prints runs/minute, queue wait (created -> started) p50/p95 and run duration
(started -> ended) per side; ratio= last: median run duration, quantos over plain (the
per-run overhead of the platform).

The default of 1,000 runs per side is what issue 9 asks for. Measured on 2 cores
(2026-12-06): with `--executor in_process` all 2,000 ran in 31 min (63.5 runs/minute; run
p50 2.59 s quantos vs 1.47 s plain, ratio=1.768; every quantos run succeeded, one plain run
failed: Dagster's fs_io_manager keeps one pickle per asset, which concurrent runs of the
same graph overwrite while another reads it). Issue 19 point 4 cut the per-node Iceberg commit
(~35 -> ~12 ms): 30 runs per side, alternating with the commit before it, load 3-7: ratio
1.81/1.99/1.83 -> 1.52/1.54/1.49; with the commit stubbed out it was 1.41. Then the per-step
path (no instance query and no ASSET_OBSERVATION per input, one log line per SQL out), 30 per
side alternating, load 2-7: 1.53/1.66/1.61/1.62/1.55/1.54 -> 1.29/1.24/1.26/1.33/1.33/1.35
(docs/decisions.md).
2026-12-07 (stop 32), 30 per side: quiet machine (load ~3.5 from the bench itself) 1.297, 1.262;
then small SQL queries on a cursor of one sandboxed DuckDB database per process (opening a
database is ~20-25 ms of DuckDB start-up, which the plain side still pays per node) and the
commit's second table load dropped (resources/iceberg_tables.py PlannedCommitCatalog):
1.107 (load 14, other agents), 1.012, 1.031, 1.021 (load 6-7), 1.101 quiet (run p50 2.34 s
vs 2.12 s).
With a process per step (forkserver, the local default) 25 per side ran at 10.9 runs/minute, run p50
21.5 s vs 17.7 s, ratio=1.212 (before the location was preloaded: 6.0 runs/minute,
ratio=3.118; multiprocess: 3.8 and 2.543), so 1,000 per side take about three hours: pass a smaller
--runs to sample it, or --timeout to report over the runs finished by then (queue waits are
then of the runs that started; --report-home DIR reports a stopped bench's instance).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from dev_server import WORKSPACE_QUERY, dagster_dev

from quantos_assets.apps.client.graphql import CLIENT_SUBMIT_PIPELINE_RUN_MUTATION

SIDES = {"quantos": "noop10", "plain": "plain10"}
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
RUNS_QUERY = """
query($tag: String!) { runsOrError(filter: {tags: [{key: "bench/side", value: $tag}]}, limit: \
5000) {
  ... on Runs { results { runId status creationTime startTime endTime } } } }
"""


def spec() -> dict:
    nodes = []
    for i in range(10):
        node: dict = {"id": f"n{i}", "kind": "trino_sql", "outs": [f"n{i}"]}
        if i < 2:
            node["params"] = {"sql": "SELECT 1 AS x"}
        else:
            node["params"] = {"sql": f"SELECT count(*) AS x FROM n{i - 2}"}
            node["ins"] = [f"n{i - 2}"]
        nodes.append(node)
    return {"version": 1, "pipeline_id": "noop10", "labels": {"team": "bench"}, "nodes": nodes}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per side")
    parser.add_argument(
        "--executor", default="multiprocess", choices=["multiprocess", "forkserver", "in_process"]
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=6 * 3600,
        help="seconds to wait for the runs; then report over those finished",
    )
    parser.add_argument(
        "--report-home", type=Path, help="only report the runs of an earlier bench's DAGSTER_HOME"
    )
    args = parser.parse_args()
    if args.report_home:
        return report(records_of(args.report_home), args.executor, stopped=True)

    root = Path(tempfile.mkdtemp(prefix="bench-load-"))
    specs = root / "specs"
    specs.mkdir()
    (specs / "noop10.yaml").write_text(yaml.safe_dump(spec()))
    workspace = root / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "definitions.definitions",
                            "location_name": "quantos",
                            "working_directory": str(ROOT),
                        }
                    },
                    {
                        "python_file": {
                            "relative_path": str(ROOT / "bench" / "load_baseline.py"),
                            "location_name": "plain",
                            "working_directory": str(ROOT),
                        }
                    },
                ]
            }
        )
    )
    shipped = {"QUANTOS_DBT": "on", "QUANTOS_LOCAL_EXECUTOR": args.executor}
    with dagster_dev(root, specs, extra_env=shipped, workspace=workspace) as srv:
        graphql = f"http://127.0.0.1:{srv.port}/graphql"
        http = httpx.Client(timeout=120)
        deadline = time.monotonic() + 180
        while True:  # the plain location loads beside quantos
            entries = srv.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
            if {e["name"] for e in entries if e["loadStatus"] == "LOADED"} >= set(SIDES):
                break
            assert time.monotonic() < deadline, entries
            time.sleep(1)

        def launch(side: str) -> None:
            selector = {
                "repositoryLocationName": side,
                "repositoryName": "__repository__",
                "pipelineName": SIDES[side],
            }
            params = {
                "selector": selector,
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": "bench/side", "value": side}]},
            }
            body = http.post(
                graphql,
                json={
                    "query": CLIENT_SUBMIT_PIPELINE_RUN_MUTATION,
                    "variables": {"executionParams": params},
                },
            ).json()
            assert "run" in body["data"]["launchPipelineExecution"], body

        started = time.time()
        for _ in range(args.runs):
            for side in SIDES:
                launch(side)
        print(f"submitted {2 * args.runs} runs in {time.time() - started:.0f} s", flush=True)

        def runs(side: str) -> list[dict]:
            return http.post(
                graphql, json={"query": RUNS_QUERY, "variables": {"tag": side}}
            ).json()["data"]["runsOrError"]["results"]

        until = time.monotonic() + args.timeout
        reported = time.monotonic()
        while True:
            records = {side: runs(side) for side in SIDES}
            done = sum(1 for rs in records.values() for r in rs if r["status"] in FINISHED)
            if done == 2 * args.runs:
                break
            if time.monotonic() > until:
                print(
                    f"--timeout: {done} of {2 * args.runs} runs finished; figures over those",
                    flush=True,
                )
                break
            if time.monotonic() - reported >= 300:  # an hours-long bench shows it is moving
                reported = time.monotonic()
                print(
                    f"{time.time() - started:6.0f} s: {done} of {2 * args.runs} runs finished",
                    flush=True,
                )
            time.sleep(
                5 if args.runs <= 50 else 30
            )  # each poll lists every run: not free for the webserver
    return report(records, args.executor)


def records_of(home: Path) -> dict[str, list[dict]]:
    """The runs of an earlier bench from its instance (DAGSTER_HOME): for one stopped early."""
    from dagster import DagsterInstance, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return {
            side: [
                {
                    "runId": r.dagster_run.run_id,
                    "status": r.dagster_run.status.value,
                    "creationTime": r.create_timestamp.timestamp(),
                    "startTime": r.start_time,
                    "endTime": r.end_time,
                }
                for r in instance.get_run_records(RunsFilter(tags={"bench/side": side}))
            ]
            for side in SIDES
        }


def report(records: dict[str, list[dict]], executor: str, stopped: bool = False) -> int:
    """Runs/minute and per-side queue wait and run duration over the finished runs; ratio= last."""
    submitted = sum(len(rs) for rs in records.values())
    records = {side: [r for r in rs if r["status"] in FINISHED] for side, rs in records.items()}
    # A failed run is reported, not a figure: the plain side's fs_io_manager keeps one pickle
    # per asset, which concurrent runs of the same graph overwrite while another reads it.
    for side, rs in records.items():
        failed = [r["runId"] for r in rs if r["status"] != "SUCCESS"]
        if failed:
            why = " (in flight at the stop, or before it)" if stopped else ""
            print(
                f"{side}: {len(failed)} run(s) did not succeed{why}, left out: "
                f"{', '.join(failed[:3])}"
            )
    ours_failed = any(r["status"] != "SUCCESS" for r in records["quantos"])
    records = {side: [r for r in rs if r["status"] == "SUCCESS"] for side, rs in records.items()}
    all_runs = [r for rs in records.values() for r in rs]
    elapsed = max(r["endTime"] for r in all_runs) - min(r["creationTime"] for r in all_runs)
    per_side = ", ".join(f"{len(rs)} {side}" for side, rs in records.items())
    print(
        f"{len(all_runs)} of {submitted} submitted runs succeeded ({per_side}; executor "
        f"{executor}) in "
        f"{elapsed:.0f} s: {60 * len(all_runs) / elapsed:.1f} runs/minute"
    )
    duration = {}
    for side, rs in records.items():
        wait = [r["startTime"] - r["creationTime"] for r in rs]
        duration[side] = [r["endTime"] - r["startTime"] for r in rs]
        print(
            f"{side:<8} queue wait p50 {pct(wait, 0.5):7.1f} s  p95 {pct(wait, 0.95):7.1f} s   "
            f"run p50 {statistics.median(duration[side]):6.2f} s  p95 "
            f"{pct(duration[side], 0.95):6.2f} s"
        )
    print(
        f"ratio={statistics.median(duration['quantos']) / statistics.median(duration['plain']):.3f}"
    )
    return 1 if ours_failed else 0  # a platform run that failed is a defect, whatever the figures


if __name__ == "__main__":
    sys.exit(main())
