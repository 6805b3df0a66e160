"""Per-step overhead of the translation and of python_task's Pipes path, against plain baselines.

    uv run python bench/step_overhead.py [--nodes 100] [--repeat-a 8] [--repeat-b 7] [--rows 10000]

(a) a_pipeline_100: a spec of `--nodes` trino_sql nodes, each `select 1 as x`, in layers of 10
    (node i reads the outs of nodes i-10 and i-9), goes spec file -> load_spec -> build_pipeline
    -> definitions_for -> job.execute_in_process. The baseline is the same graph as plain
    @asset functions whose body calls the same DuckDBEngine.query("SELECT 1 AS x", inputs).
    Both sides: in-process executor, an ephemeral instance, dagster's mem_io_manager. The
    in-memory IO manager is on purpose: LakeIOManager costs the same on both sides (and has its
    own benchmark, bench/iceberg_io.py), so it would only dilute the ratio; with
    mem_io_manager what differs is exactly our translation (wrapper, NodeRun, sqlglot
    transpile, tags/kinds/metadata, the extra resources a node requires). Timed end to end
    (spec file to finished run); the execute_in_process part alone is printed as well.
    Where (a)'s difference goes (cProfile): mostly the log line SqlRunner writes per out
    (rows and the DuckDB SQL; two lines before issue 19 point 4), an event stored in the
    instance; then build_pipeline and the sqlglot transpile (~0.5 ms a node).
(b) b_pipes: one python_task (quantos_assets.tasks.noop:passthrough on a `--rows` Arrow
    table) run by our PythonTaskRunner, called inside a minimal asset exactly as the
    translation calls it (real step context, real PipesSubprocessClient); timed around
    runner.run (write inputs, Pipes session + child, read outs). The baseline, timed in the
    same way: write the same table as Arrow, `subprocess.run([sys.executable, "-c", ...])`
    that imports the same function, reads the table, calls it and writes the result, read it
    back. The whole one-step materialization is printed too (not part of the ratio: that is
    Dagster's run overhead, not Pipes).
    Where (b)'s time goes: the parent only waits on the child (cProfile: all in waitpid); the
    child is interpreter + pyarrow start-up on both sides, plus dagster_pipes (~30 ms) on ours.
    Before pipes_entry.write_arrow, feather.write_feather made every child import pandas
    (~1-2.5 s): ratio 6.1.

Sides alternate, best of the repetitions. Prints `ratio=<the larger of the two>` last
(goals: a <= 1.10, b <= 1.5).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa
from dagster import (
    AssetIn,
    AssetSelection,
    DagsterInstance,
    Definitions,
    Output,
    PipesSubprocessClient,
    PreviewWarning,
    asset,
    define_asset_job,
    materialize,
    mem_io_manager,
)
from pyarrow import feather

from definitions.assemble import definitions_for
from quantos_assets.kinds.base import NodeRun
from quantos_assets.kinds.registry import build_runners, runner_for
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile
from resources.sql_engine import DuckDBEngine

PIPELINE = "bench_steps"
WIDTH = 10
SQL = "SELECT 1 AS x"
ENTRYPOINT = "quantos_assets.tasks.noop:passthrough"
# Both sides: events still go to the instance, the console shows warnings only (a 100-step
# run otherwise prints thousands of DEBUG lines into `make bench`).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
warnings.filterwarnings("ignore", category=PreviewWarning)  # Pipes' expected_writer_count


# --- (a) a pipeline of no-op nodes -----------------------------------------------------------


def make_spec(n: int) -> dict[str, Any]:
    nodes = []
    for i in range(n):
        ins = (
            sorted({f"out_{i - WIDTH}", f"out_{i - WIDTH + (1 if (i + 1) % WIDTH else 0)}"})
            if i >= WIDTH
            else []
        )
        nodes.append(
            {
                "id": f"node_{i}",
                "kind": "trino_sql",
                "params": {"sql": SQL},
                "ins": ins,
                "outs": [f"out_{i}"],
            }
        )
    return {"version": 1, "pipeline_id": PIPELINE, "nodes": nodes}


def ours_a(path: Path, data_dir: Path) -> tuple[float, Any]:
    """Spec file -> finished run; returns (execute_in_process seconds, result)."""
    profile = active_profile({"QUANTOS_DATA_DIR": str(data_dir)})
    defs = definitions_for([build_pipeline(load_spec(path), profile)], profile)
    # The same Definitions with only the IO manager swapped (see the module docstring).
    defs = Definitions(
        assets=defs.assets,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources={**(defs.resources or {}), "io_manager": mem_io_manager},
    )
    job = defs.resolve_job_def(PIPELINE)
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config=QUIET)
    return time.perf_counter() - t0, result


def plain_a(spec: dict[str, Any]) -> tuple[float, Any]:
    assets = []
    for node in spec["nodes"]:

        @asset(
            key=[PIPELINE, node["outs"][0]],
            ins={i: AssetIn(key=[PIPELINE, i]) for i in node["ins"]},
            group_name=PIPELINE,
            required_resource_keys={"sql_engine"},
        )
        def _fn(context, **inputs):
            return context.resources.sql_engine.query(SQL, inputs)

        assets.append(_fn)
    defs = Definitions(
        assets=assets,
        jobs=[define_asset_job(PIPELINE, selection=AssetSelection.groups(PIPELINE))],
        resources={"sql_engine": DuckDBEngine(), "io_manager": mem_io_manager},
    )
    job = defs.resolve_job_def(PIPELINE)
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config=QUIET)
    return time.perf_counter() - t0, result


def check_a(result: Any, n: int) -> None:
    assert result.success
    steps = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert len(steps) == n, len(steps)


# --- (b) one python_task through Pipes -----------------------------------------------------


def bench_table(rows: int) -> pa.Table:
    return pa.table(
        {
            "i": pa.array(range(rows), pa.int64()),
            "px": pa.array([100.0 + (i % 97) * 0.01 for i in range(rows)], pa.float64()),
            "symbol": pa.array([f"SYM{i % 500:04d}" for i in range(rows)]),
        }
    )


def ours_b(table: pa.Table) -> tuple[float, float]:
    """(seconds in runner.run, seconds of the whole one-step materialization)."""
    node = Node(
        id="task",
        kind=NodeKind.python_task,
        params={"entrypoint": ENTRYPOINT},
        ins=["table"],
        outs=["out"],
    )
    spec = DagSpec.model_construct(version=1, pipeline_id="bench_pipes", nodes=[node])
    runner = runner_for(node.kind, build_runners(active_profile()))
    inner: list[float] = []

    @asset(
        name="task",
        required_resource_keys=set(runner.required_resource_keys),
        io_manager_key="mem_io",
    )
    def _task(context):
        t0 = time.perf_counter()
        values = runner.run(
            context, NodeRun(spec=spec, node=node, spec_dir=None, inputs={"table": table})
        )
        inner.append(time.perf_counter() - t0)
        out = values["out"]
        assert isinstance(out, pa.Table) and out.equals(table)
        return Output(out)  # a Pipes session asks for typed results

    t0 = time.perf_counter()
    result = materialize(
        [_task],
        resources={"pipes_subprocess_client": PipesSubprocessClient(), "mem_io": mem_io_manager},
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET,
    )
    whole = time.perf_counter() - t0
    assert result.success
    return inner[0], whole


# Reads and writes the same Feather V2 (Arrow IPC) files as the Pipes child, the lean way:
# feather.write_feather (and pa.table/pa.array on Python data) import pandas, which would
# cost a child more start-up than pyarrow itself.
BARE_CHILD = (
    "import sys\n"
    "import pyarrow as pa\n"
    "from pyarrow import feather\n"
    "from quantos_assets.tasks.noop import passthrough\n"
    "t = passthrough(feather.read_table(sys.argv[1]))\n"
    "opts = pa.ipc.IpcWriteOptions(compression='lz4')\n"
    "with pa.OSFile(sys.argv[2], 'wb') as f, pa.ipc.new_file(f, t.schema, options=opts) as w:\n"
    "    w.write_table(t, max_chunksize=64 * 1024)\n"
)


def bare_b(table: pa.Table) -> float:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        src, dst = Path(tmp) / "table.arrow", Path(tmp) / "out.arrow"
        feather.write_feather(table, src)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        subprocess.run([sys.executable, "-c", BARE_CHILD, str(src), str(dst)], env=env, check=True)
        out = feather.read_table(dst, memory_map=False)
    elapsed = time.perf_counter() - t0
    assert out.equals(table)
    return elapsed


# --- driver -------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, this process's CPU seconds, value)."""
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, time.process_time() - c0, value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--repeat-a", type=int, default=8)
    ap.add_argument("--repeat-b", type=int, default=7)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--only", choices=("a", "b"))
    args = ap.parse_args()
    ratios: list[float] = []

    if args.only in (None, "a"):
        spec = make_spec(args.nodes)
        ours: list[float] = []
        ours_exec: list[float] = []
        plain: list[float] = []
        plain_exec: list[float] = []
        ours_cpu: list[float] = []
        plain_cpu: list[float] = []
        with tempfile.TemporaryDirectory(prefix="bench-steps-") as tmp:
            path = Path(tmp) / "steps.json"
            path.write_text(json.dumps(spec))
            for rep in range(args.repeat_a + 1):  # the first round warms both sides up, not counted
                t_ours, c_ours, (e_ours, r_ours) = timed(lambda: ours_a(path, Path(tmp) / "data"))
                t_plain, c_plain, (e_plain, r_plain) = timed(lambda: plain_a(spec))
                check_a(r_ours, args.nodes)
                check_a(r_plain, args.nodes)
                if rep:
                    ours.append(t_ours)
                    ours_exec.append(e_ours)
                    plain.append(t_plain)
                    plain_exec.append(e_plain)
                    ours_cpu.append(c_ours)
                    plain_cpu.append(c_plain)
        print(
            f"a_execute_only ours={min(ours_exec):.3f}s plain={min(plain_exec):.3f}s "
            f"ratio={min(ours_exec) / min(plain_exec):.3f} (median "
            f"ours={statistics.median(ours_exec):.3f}s "
            f"plain={statistics.median(plain_exec):.3f}s)"
        )
        # CPU time of this process (DuckDB's threads included) moves less with other load on the
        # box.
        print(
            f"a_cpu ours={min(ours_cpu):.3f}s plain={min(plain_cpu):.3f}s "
            f"ratio={min(ours_cpu) / min(plain_cpu):.3f}"
        )
        ratio_a = min(ours) / min(plain)
        ratios.append(ratio_a)
        print(
            f"a_pipeline_{args.nodes} ours={min(ours):.3f}s plain={min(plain):.3f}s "
            f"ratio={ratio_a:.3f}"
        )

    if args.only in (None, "b"):
        table = bench_table(args.rows)
        ours_in: list[float] = []
        ours_whole: list[float] = []
        bare: list[float] = []
        for rep in range(args.repeat_b + 1):
            gc.collect()
            t_in, t_whole = ours_b(table)
            gc.collect()
            t_bare = bare_b(table)
            if rep:
                ours_in.append(t_in)
                ours_whole.append(t_whole)
                bare.append(t_bare)
        print(
            f"b_whole_step ours={min(ours_whole):.3f}s (one-asset materialize around runner.run; "
            f"median {statistics.median(ours_whole):.3f}s)"
        )
        ratio_b = min(ours_in) / min(bare)
        ratios.append(ratio_b)
        print(
            f"b_pipes ours={min(ours_in):.3f}s bare={min(bare):.3f}s ratio={ratio_b:.3f} "
            f"(median ours={statistics.median(ours_in):.3f}s bare={statistics.median(bare):.3f}s)"
        )

    print(f"ratio={max(ratios):.3f}")


if __name__ == "__main__":
    main()
