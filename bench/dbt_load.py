"""Code-location load with the dbt models against the same location without them.

Each side is a fresh interpreter (what a code server, `dagster definitions validate` and
every run worker pay): from the first import to a resolved repository of the example
specs, with (`build_definitions()`) and without (`build_definitions(dbt=False)`) the dbt
assets. Sides alternate; best of --repeat. Then `dagster definitions validate` is timed
once per side, end to end. Prints ratio= last (with dbt / without; the price of
dagster-dbt's imports and the manifest, so > 1 is expected: goal <= 2.0).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LOAD = """
import time
t0 = time.perf_counter()
from definitions.assemble import build_definitions
defs = build_definitions(dbt={dbt})
n = len(defs.resolve_asset_graph().get_all_asset_keys())
print(time.perf_counter() - t0, n)
"""


def load_once(dbt: bool, env: dict[str, str]) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", LOAD.format(dbt=dbt)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    ).stdout.split()
    return float(out[-2]), int(out[-1])


def validate_once(module_dir: Path, module: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", module],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env={**env, "PYTHONPATH": os.pathsep.join([str(module_dir), str(REPO)])},
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "QUANTOS_ENV": "local",
            "QUANTOS_DATA_DIR": str(Path(tmp) / "data"),
            "DAGSTER_HOME": str(Path(tmp) / "home"),
            "PYTHONWARNINGS": "ignore",
        }
        (Path(tmp) / "home").mkdir()
        (Path(tmp) / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        if not (REPO / "dbt_project" / "target" / "manifest.json").exists():
            subprocess.run(
                [sys.executable, "-m", "quantos_assets.dbt_models"], cwd=REPO, env=env, check=True
            )
        load_once(True, env)  # warm the bytecode and page caches for both sides
        with_dbt: list[float] = []
        without: list[float] = []
        n_with = n_without = 0  # assets loaded with / without dbt (the same every round)
        for _ in range(args.repeat):
            t, n_with = load_once(True, env)
            with_dbt.append(t)
            t, n_without = load_once(False, env)
            without.append(t)
            assert n_with > n_without, (n_with, n_without)
        (Path(tmp) / "nodbt_defs.py").write_text(
            "from definitions.assemble import build_definitions\ndefs = "
            "build_definitions(dbt=False)\n"
        )
        v_with = validate_once(Path(tmp), "definitions.definitions", env)
        v_without = validate_once(Path(tmp), "nodbt_defs", env)
    print(f"assets: {n_with} with dbt, {n_without} without")
    print(f"dagster definitions validate: {v_with:.2f}s with dbt, {v_without:.2f}s without")
    print(f"load best of {args.repeat}: {min(with_dbt):.2f}s with dbt, {min(without):.2f}s without")
    print(f"ratio={min(with_dbt) / min(without):.3f}")


if __name__ == "__main__":
    main()
