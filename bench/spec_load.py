"""Spec -> Definitions against the same graph written as plain @asset functions.

Both sides end with a fully resolved repository (asset graph and job built),
measured alternately in one process; best of --repeat. Prints ratio= last
(spec time / plain time; goal <= 1.0).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster import AssetIn, AssetSelection, Definitions, asset, define_asset_job

from definitions.assemble import definitions_for
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile

PIPELINE = "bench_pipeline"


def make_spec(n: int) -> dict[str, Any]:
    """A layered DAG, 100 nodes wide: node i reads two outs of the layer before (fan-in 2)."""
    width = 100
    nodes = []
    for i in range(n):
        ins = (
            sorted({f"out_{i - width}", f"out_{i - width + 1 if (i + 1) % width else i - width}"})
            if i >= width
            else []
        )
        nodes.append(
            {
                "id": f"node_{i}",
                "kind": "python_task",
                "params": {"entrypoint": "quantos_assets.tasks.noop:run"},
                "ins": ins,
                "outs": [f"out_{i}"],
            }
        )
    return {
        "version": 1,
        "pipeline_id": PIPELINE,
        "slo": {"max_runtime": "2h", "retry": {"max_attempts": 2, "backoff_sec": 5}},
        "resources": {"default": {"cpu": "1", "mem": "2Gi"}},
        "nodes": nodes,
    }


def resolve(defs: Definitions) -> int:
    repo = defs.get_repository_def()
    repo.get_job(PIPELINE)
    return len(repo.asset_graph.get_all_asset_keys())


def spec_side(path: Path) -> int:
    loaded = load_spec(path)
    profile = active_profile()
    return resolve(definitions_for([build_pipeline(loaded, profile)], profile))


def plain_side(spec: dict[str, Any]) -> int:
    assets = []
    for node in spec["nodes"]:
        out = node["outs"][0]

        @asset(
            key=[PIPELINE, out],
            ins={i: AssetIn(key=[PIPELINE, i]) for i in node["ins"]},
            group_name=PIPELINE,
        )
        def _fn(context, **inputs):
            return None

        assets.append(_fn)
    job = define_asset_job(PIPELINE, selection=AssetSelection.groups(PIPELINE))
    return resolve(Definitions(assets=assets, jobs=[job]))


def best(fn: Callable[[], int], times: list[float]) -> int:
    gc.collect()
    t0 = time.perf_counter()
    count = fn()
    times.append(time.perf_counter() - t0)
    return count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    spec = make_spec(args.nodes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.json"
        path.write_text(json.dumps(spec))
        ours: list[float] = []
        plain: list[float] = []
        for _ in range(args.repeat):
            n1 = best(lambda: spec_side(path), ours)
            n2 = best(lambda: plain_side(spec), plain)
            assert n1 == n2 == args.nodes, (n1, n2)
    print(
        f"nodes={args.nodes} spec->Definitions best={min(ours):.2f}s plain @asset "
        f"best={min(plain):.2f}s"
    )
    print(f"ratio={min(ours) / min(plain):.3f}")


if __name__ == "__main__":
    main()
