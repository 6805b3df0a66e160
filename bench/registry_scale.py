"""The registry at scale (issue 20): building the code location as the registry grows.

Generated 5-node specs spread over 8 teams, dbt off, built in-process to a fully resolved
repository (every job resolved, as the code server does right after loading):
- `one location`: today's single code location of all N pipelines (`build_definitions`);
- `per team`: each team's pipelines as a location of its own, the slowest of the 8 and the
  sum (what a code location per team would load; nothing else changes);
- `plain`: the same assets as plain `@asset` functions with one asset job per pipeline, in
  one location (the baseline).
At each N, and the growth exponent between the smallest and the largest N
(log(t_max / t_min) / log(N_max / N_min); goal <= 1.1 for what a reload costs).

Not measured here yet: submit -> run started p95 through the gateway (a real `dagster dev`).

Prints ratio= last: the slowest team location at the largest N over the plain single
location of all N pipelines (goal <= 0.2).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster import AssetIn, AssetSelection, Definitions, asset, define_asset_job

from definitions.assemble import build_definitions, build_pipelines, definitions_for, loadable
from quantos_assets.bulk_build import cyclic_gc_paused
from quantos_assets.spec_registry import scan_specs
from quantos_assets.tenancy.teams import pipeline_team
from resources.profile import active_profile

TEAMS = [f"team_{i}" for i in range(8)]
NODES = 5


def make_spec(index: int) -> dict[str, Any]:
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
        "labels": {"team": TEAMS[index % len(TEAMS)]},
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


def per_team(specs: Path) -> dict[str, float]:
    """Each team's location built alone (scan once, as the shared registry index would)."""
    profile = active_profile()
    scan = scan_specs(specs)
    by_team: dict[str, list[Any]] = {}
    for item in scan.valid:
        by_team.setdefault(pipeline_team(item.spec.labels) or "-", []).append(item)
    times: dict[str, float] = {}
    for team, items in sorted(by_team.items()):

        def build(items: list[Any] = items) -> None:
            pipelines = build_pipelines(items, {}, profile)
            resolve_all(loadable(definitions_for(pipelines, profile)))

        times[team] = timed(build)
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
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")] + ([5000] if args.long else [])
    ours, slowest, total, base = [], [], [], []
    for n in sizes:
        specs = [make_spec(i) for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for spec in specs:
                (folder / f"{spec['pipeline_id']}.json").write_text(json.dumps(spec))
            ours.append(timed(partial(one_location, folder)))
            teams = per_team(folder)
            base.append(timed(partial(plain, specs)))
        slowest.append(max(teams.values()))
        total.append(sum(teams.values()))
        print(
            f"N={n} ({n * NODES} nodes): one location {ours[-1]:.2f}s | per team: slowest "
            f"{slowest[-1]:.2f}s, all 8 {total[-1]:.2f}s | plain one location {base[-1]:.2f}s",
            flush=True,
        )
    if len(sizes) > 1:
        print(
            f"growth exponent {sizes[0]}->{sizes[-1]}: one location {exponent(sizes, ours):.2f}, "
            f"slowest team location {exponent(sizes, slowest):.2f}, all team locations "
            f"{exponent(sizes, total):.2f}, plain {exponent(sizes, base):.2f}"
        )
    print("submit -> run started p95 (gateway, dagster dev): not measured by this benchmark yet")
    largest = sizes.index(max(sizes))
    print(f"ratio={slowest[largest] / base[largest]:.3f}")


if __name__ == "__main__":
    main()
