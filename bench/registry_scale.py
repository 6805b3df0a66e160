"""The registry at scale (issue 20): code locations as the registry grows, and a submission's
wait at 1,600 pipelines.

Generated 5-node specs spread over 8 teams (deploy/teams.yaml-like file, one location each),
dbt off:
- `one location`: the whole registry as one code location (`build_definitions()`), built
  in-process to a fully resolved repository (every job resolved, as the code server does);
- `per location`: each location of the generated workspace loaded the way its code server
  loads it, in a fresh Python (`definitions.locations`, attribute = the location): imports,
  the registry scan and the build, measured per process; the slowest and the sum;
- `plain`: the same assets as plain `@asset` functions with one asset job per pipeline, in one
  location, built in-process (the baseline; it pays no import, so the ratio is conservative).
At each N, and the growth exponent between the smallest and the largest N
(log(t_max / t_min) / log(N_max / N_min); goal <= 1.1).

`--submit N` (default 1,600; 0 skips it): a real `dagster dev` serving the generated
workspace of N pipelines, a real gateway in front; K new spec versions submitted over HTTP,
each timed to Dagster's run existing (the gateway launched it) and to the run STARTED; before
them three runs launched straight on Dagster with no reload (`launch alone`). `--teams T` and
`--shards S` set the locations (N / (T * S) pipelines each: location size is what a reload
pays for); `--asset-job` is the prototype of docs/decisions.md: no job per pipeline, runs
launched on the location's implicit asset job (`quantos_assets/asset_job_launch.py`).
`--sizes ''` runs the submit bench alone (no ratio line).

Prints ratio= last: the slowest location's load at the largest N over the plain single
location of all N pipelines (goal <= 0.2).

Measured on 2 cores:
- 2026-12-07 stop 30, quiet: N=100/400/1600 slowest location 5.97/10.85/7.52 s, plain
  1.75/6.90/80.2 s, ratio=0.094; `--submit 1600`: a 200-pipeline location reloads in ~25 s,
  submit -> STARTED p95 57.4 s (goal 5 s, not met: docs/decisions.md says where it goes).
- 2026-12-07 stop 31, `--sizes 100,1600,5000 --submit 0` (the `--long` size) beside other
  test runs, load 3-6: N=5000 one location 767 s, slowest team location 24.3 s, all ten
  178 s, plain 1,100 s; growth 100->5000: slowest location 0.29, all 0.35, one location
  1.71, plain 1.70; ratio=0.022.
- 2026-12-07 stop 32, submit bench alone, `--sizes '' --teams 2 --submissions 10`, location
  size from `--submit` (400/200/100 -> 200/100/50 a location), load 3-20 (other agents):
  STARTED p95 (median) a job per pipeline: 200 a location 43.7 s (30.1), 100 39.0 s (31.9),
  50 33.8 s (16.6); `--asset-job`: 200 29.4 s (20.5), 100 17.1 s (14.1) and 25.9 s (16.5),
  50 17.2 s (8.2), 50 as 4 shards of one team (`--teams 1 --shards 4`) 32.5 s (15.0).
  Reload of a 200-pipeline location 24 s -> 12-15 s with the asset job; an empty location
  reloads in 2.6-8.3 s. Goal 5 s not met (docs/decisions.md).
- 2026-12-08 stop 33, in-place code servers (the default now; `--dagster-reload` for Dagster's
  restarting ones), `--sizes '' --submit 400 --teams 2 --submissions 10` (200 pipelines a
  location), quiet machine (load 0.5-4.7), the two modes one after the other:
  asset-job prototype: in place STARTED p95 9.69 s (median 7.56), launched p95 6.55 s,
  reload 2.5-2.9 s, empty location 0.12 s; restarted 15.53 s (13.88), 12.58 s, 6.5-8.5 s,
  3.43 s. A job per pipeline: in place 22.63 s (18.21), 16.77 s, 11.0-12.1 s, 0.09 s;
  restarted 30.15 s (22.34), 26.18 s, 17.7-20.5 s, 3.38 s. Goal 5 s not met.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dagster import AssetIn, AssetSelection, Definitions, asset, define_asset_job

from definitions.assemble import build_definitions
from quantos_assets.asset_job_launch import (
    ASSET_JOB_LAUNCH_ENV,
    IMPLICIT_ASSET_JOB,
    launch_asset_keys,
)
from quantos_assets.bulk_build import cyclic_gc_paused
from quantos_assets.tenancy.locations import LocationPlan
from quantos_assets.tenancy.teams import load_teams
from resources.profile import active_profile

TEAMS = [f"desk{i}" for i in range(8)]
NODES = 5


def make_spec(index: int, teams: list[str] = TEAMS) -> dict[str, Any]:
    """A 5-node chain: each node reads the out before it."""
    pid = f"strat_{index:05d}"
    nodes = [
        {
            "id": f"n{j}",
            "kind": "python_task",
            "params": {"entrypoint": "quantos_assets.tasks.noop:run"},
            "ins": [f"o{j - 1}"] if j else [],
            "outs": [f"o{j}"],
        }
        for j in range(NODES)
    ]
    return {
        "version": 1,
        "pipeline_id": pid,
        "labels": {"team": teams[index % len(teams)]},
        "nodes": nodes,
    }


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def resolve_all(defs: Definitions) -> int:
    with cyclic_gc_paused():
        jobs = defs.get_repository_def().get_all_jobs()
    return len(jobs)


def one_location(specs: Path) -> None:
    resolve_all(build_definitions(active_profile(), specs, dbt=False))


def submit_waits(
    n: int,
    k: int,
    team_count: int = len(TEAMS),
    shards: int = 1,
    asset_job: bool = False,
    in_place: bool = True,
) -> tuple[list[float], list[float]]:
    """K submissions of new spec versions through a real gateway in front of a real dagster
    dev serving N pipelines in a location per team (`shards` per team): seconds to the run
    existing (launched by the gateway) and to the run STARTED. `asset_job`: the prototype of
    docs/decisions.md, no job per pipeline, runs launched on the implicit asset job.
    `in_place`: the locations served as `make run` serves them (in-place code servers); else
    by dagster dev's own, which a reload restarts."""
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    sys.path.insert(0, str(ROOT / "tests"))
    from gateway_stack import gateway_stack

    from quantos_assets.apps.client.graphql import DagsterAPI
    from quantos_assets.tenancy.teams import TeamsFile
    from quantos_assets.tenancy.workspace_file import workspace_yaml

    names = [f"desk{i}" for i in range(team_count)]
    specs = [make_spec(i, names) for i in range(n)]
    plan = LocationPlan.of(
        TeamsFile.model_validate({"teams": {t: {"shards": shards} for t in names}})
    )
    launched: list[float] = []
    started: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workspace = root / "workspace.yaml"
        workspace.write_text(workspace_yaml(plan))
        tokens = [(t, t, "submit,read") for t in names]
        teams = {"teams": {t: {"submissions_per_minute": 6000, "shards": shards} for t in names}}
        env = {"QUANTOS_DBT": "off", "QUANTOS_LOCAL_EXECUTOR": "in_process"}
        if asset_job:
            env[ASSET_JOB_LAUNCH_ENV] = "1"
        t0 = time.perf_counter()
        with gateway_stack(
            root,
            specs,
            teams,
            tokens,
            env,
            workspace=workspace,
            location=plan.names()[1],
            timeout=900,
            in_place=in_place,
        ) as stack:
            for loc in plan.names():  # every location loaded before the clock starts
                _wait_loaded(stack.dagster, loc)
            print(
                f"  dagster dev with {n} pipelines in {len(plan.team_locations())} team locations"
                f" ({n // len(plan.team_locations())} each) up in {time.perf_counter() - t0:.1f}s"
                f" (asset job launch: {asset_job}, in-place code servers: {in_place})",
                flush=True,
            )
            api = DagsterAPI(f"http://127.0.0.1:{stack.dagster.port}")
            for loc in (plan.names()[1], plan.names()[1], plan.names()[0]):
                t_reload = time.perf_counter()
                api.reload_location(loc)
                print(f"  reload of {loc} alone: {time.perf_counter() - t_reload:.2f}s", flush=True)
            for i in range(3):  # the launch alone, its location loaded (no reload)
                _launch_alone(stack, api, specs[(i * 41 + 5) % n], plan, asset_job)
            for i in range(k):
                spec = dict(specs[(i * 37) % n])
                spec["description"] = f"version {i}"  # a new version: its location reloads
                team = spec["labels"]["team"]
                sid = f"bench-{i}"
                t_submit = time.perf_counter()
                answer = stack.call(
                    "POST",
                    "/api/orch/submit",
                    team,
                    json={"dag_spec": spec, "runtime_params": {"submission_id": sid}},
                )
                assert answer.status_code == 202, answer.text
                accepted = time.perf_counter() - t_submit
                seen_launch = None
                while True:
                    body = stack.call("GET", f"/api/orch/status/{sid}", team).json()
                    now = time.perf_counter() - t_submit
                    if seen_launch is None and body.get("run_id"):
                        seen_launch = now
                    if body.get("status") in ("STARTED", "SUCCESS", "FAILURE"):
                        break
                    assert now < 300, body
                    time.sleep(0.1)
                launched.append(seen_launch or now)
                started.append(now)
                print(
                    f"  submission {i}: accepted (202) {accepted:.2f}s, launched "
                    f"{launched[-1]:.2f}s, started {now:.2f}s",
                    flush=True,
                )
    return launched, started


def _launch_alone(
    stack: Any, api: Any, spec: dict[str, Any], plan: LocationPlan, asset_job: bool
) -> None:
    """One run of a loaded pipeline launched straight on Dagster (no gateway, no reload):
    seconds to the run id and to STARTED."""
    from quantos_assets.spec.models import DagSpec

    pid, team = spec["pipeline_id"], spec["labels"]["team"]
    job, keys = (
        (IMPLICIT_ASSET_JOB, launch_asset_keys(DagSpec.model_validate(spec)))
        if asset_job
        else (pid, None)
    )
    tags = {"quantos/pipeline": pid, "quantos/team": team}
    t0 = time.perf_counter()
    run_id = api.launch(job, tags, None, keys, plan.location_of(pid, team))
    launched = time.perf_counter() - t0
    while api.run(run_id)["status"] not in ("STARTED", "SUCCESS", "FAILURE"):
        assert time.perf_counter() - t0 < 300, run_id
        time.sleep(0.1)
    print(
        f"  launch alone ({job}): run created {launched:.2f}s, "
        f"STARTED {time.perf_counter() - t0:.2f}s",
        flush=True,
    )


def _wait_loaded(server: Any, location: str) -> None:
    from dev_server import location_state

    deadline = time.monotonic() + 600
    while location_state(server, location)[0] != "LOADED":
        assert time.monotonic() < deadline, f"{location} never loaded"
        time.sleep(1)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


CHILD = """
import json, sys, time
t0 = time.perf_counter()
import definitions.locations as locations
t1 = time.perf_counter()
defs = getattr(locations, sys.argv[1])
jobs = len(defs.get_repository_def().get_all_jobs())
print(json.dumps({"import": t1 - t0, "build": time.perf_counter() - t1, "jobs": jobs}))
"""


def teams_file(folder: Path) -> Path:
    path = folder / "teams.yaml"
    path.write_text(json.dumps({"teams": {team: {} for team in TEAMS}}))
    return path


def per_location(specs: Path, teams: Path) -> dict[str, float]:
    """Each location of the workspace loaded in a fresh Python, as its code server loads it
    (wall time of the whole process: interpreter, imports, registry scan, build)."""
    env = {**os.environ, "QUANTOS_SPECS_DIR": str(specs), "QUANTOS_TEAMS": str(teams)}
    env.update({"QUANTOS_DBT": "off", "PYTHONWARNINGS": "ignore"})
    plan = LocationPlan.of(load_teams(teams))
    times: dict[str, float] = {}
    for name in plan.names():
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", CHILD, name],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        times[name] = time.perf_counter() - t0
    return times


def plain(specs: list[dict[str, Any]]) -> None:
    assets = []
    jobs = []
    for spec in specs:
        pid = spec["pipeline_id"]
        for node in spec["nodes"]:

            @asset(
                key=[pid, node["outs"][0]],
                ins={i: AssetIn(key=[pid, i]) for i in node["ins"]},
                group_name=pid,
            )
            def _fn(context, **inputs):
                return None

            assets.append(_fn)
        jobs.append(define_asset_job(pid, selection=AssetSelection.groups(pid)))
    resolve_all(Definitions(assets=assets, jobs=jobs))


def exponent(sizes: list[int], times: list[float]) -> float:
    return math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,400,1600", help="pipelines, comma-separated")
    ap.add_argument("--long", action="store_true", help="also 5,000 pipelines")
    ap.add_argument("--submit", type=int, default=1600, help="pipelines for the submit bench")
    ap.add_argument("--submissions", type=int, default=20, help="submissions timed")
    ap.add_argument("--teams", type=int, default=len(TEAMS), help="teams of the submit bench")
    ap.add_argument("--shards", type=int, default=1, help="locations per team (submit bench)")
    ap.add_argument(
        "--asset-job",
        action="store_true",
        help="prototype: no job per pipeline, runs launched on the implicit asset job",
    )
    ap.add_argument(
        "--dagster-reload",
        action="store_true",
        help="dagster dev's own code servers (a reload restarts one), not make run's in-place",
    )
    args = ap.parse_args()
    # `--sizes ''`: the submit bench alone (no ratio line)
    sizes = [int(n) for n in args.sizes.split(",") if n] + ([5000] if args.long else [])
    ours, slowest, total, base = [], [], [], []
    for n in sizes:
        specs = [make_spec(i) for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for spec in specs:
                (folder / f"{spec['pipeline_id']}.json").write_text(json.dumps(spec))
            ours.append(timed(partial(one_location, folder)))
            teams = per_location(folder, teams_file(Path(tmp)))
            base.append(timed(partial(plain, specs)))
        slowest.append(max(teams.values()))
        total.append(sum(teams.values()))
        print(
            f"N={n} ({n * NODES} nodes): one location {ours[-1]:.2f}s | per location (fresh "
            f"process each): slowest {slowest[-1]:.2f}s, all {len(teams)} {total[-1]:.2f}s | "
            f"plain one location {base[-1]:.2f}s",
            flush=True,
        )
    if len(sizes) > 1:
        print(
            f"growth exponent {sizes[0]}->{sizes[-1]}: one location {exponent(sizes, ours):.2f}, "
            f"slowest team location {exponent(sizes, slowest):.2f}, all team locations "
            f"{exponent(sizes, total):.2f}, plain {exponent(sizes, base):.2f}"
        )
    if args.submit:
        launched, started = submit_waits(
            args.submit,
            args.submissions,
            args.teams,
            args.shards,
            args.asset_job,
            in_place=not args.dagster_reload,
        )
        print(
            f"N={args.submit}: submit -> run launched p95 {p95(launched):.2f}s (median "
            f"{statistics.median(launched):.2f}s), submit -> run STARTED p95 "
            f"{p95(started):.2f}s (median {statistics.median(started):.2f}s), "
            f"{len(started)} submissions (goal <= 5 s)"
        )
    if not sizes:
        return
    largest = sizes.index(max(sizes))
    print(f"ratio={slowest[largest] / base[largest]:.3f}")


if __name__ == "__main__":
    main()
