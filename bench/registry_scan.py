"""Scanning the registry in a fresh process (issue 20): with the catalog warm vs a full parse.

Each team's code location is a process of its own that scans the whole registry when it
starts. N generated 5-node specs over 8 teams (registry_scale.make_spec); each measurement
is a new Python process timing `scan_specs` alone (imports excluded, they are the same):
- `cold`: no catalog, every spec parsed (what each process paid before the catalog);
- `warm`: the catalog as the previous scan left it, nothing changed;
- `warm + one team`: the warm scan, then `scan.load` of one team's pipelines (a team's
  code location: the specs it builds).
Alternating cold and warm runs, the median of each.

Prints ratio= last: warm over cold (the scan a process pays at start, with over without
the catalog).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quantos_assets.registry_catalog import catalog_path
from quantos_assets.spec_registry import scan_specs
from quantos_assets.spec_rules.firm import load_spec


def child(folder: Path, team: str, warm_up: Path) -> None:
    """One process's scan, printed as JSON. A spec elsewhere is checked first: the checks'
    lazy imports (Dagster, pyarrow) are not counted, a code server has them already."""
    load_spec(warm_up)
    t0 = time.perf_counter()
    scan = scan_specs(folder)
    scanned = time.perf_counter() - t0
    parsed = scan.parsed
    loaded = scan.load(e.pipeline_id for e in scan.entries if e.team == team)
    total = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "scan": scanned,
                "scan_and_load": total,
                "parsed_by_scan": parsed,
                "entries": len(scan.entries),
                "loaded": len(loaded),
            }
        )
    )


def run_child(folder: Path, team: str, warm_up: Path) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(folder),
            "--team",
            team,
            "--warm-up",
            str(warm_up),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1600, help="pipelines")
    ap.add_argument("--repeat", type=int, default=3, help="cold and warm runs each")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--team", help=argparse.SUPPRESS)
    ap.add_argument("--warm-up", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child, args.team, args.warm_up)
        return
    # here only: it imports Dagster, which the timed processes need not
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from registry_scale import TEAMS, make_spec

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "specs"
        folder.mkdir()
        warm_up = Path(tmp) / "warm_up.json"
        warm_up.write_text(json.dumps(make_spec(args.n)))
        for i in range(args.n):
            spec = make_spec(i)
            (folder / f"{spec['pipeline_id']}.json").write_text(json.dumps(spec))
        cold: list[dict[str, float]] = []
        warm: list[dict[str, float]] = []
        for _ in range(args.repeat):
            catalog_path(folder).unlink(missing_ok=True)
            cold.append(run_child(folder, TEAMS[0], warm_up))
            warm.append(run_child(folder, TEAMS[0], warm_up))
    assert all(r["parsed_by_scan"] == args.n for r in cold), cold
    assert all(r["parsed_by_scan"] == 0 for r in warm), warm
    assert all(r["entries"] == args.n for r in cold + warm)

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    c, w = median(cold, "scan"), median(warm, "scan")
    print(f"N={args.n} 5-node specs, fresh process each, median of {args.repeat}:")
    print(f"cold scan (no catalog, {args.n} parsed): {c:.3f}s")
    print(f"warm scan (catalog, 0 parsed): {w:.3f}s")
    print(
        f"warm scan + load one team's {int(warm[0]['loaded'])} specs: "
        f"{median(warm, 'scan_and_load'):.3f}s (cold scan + the same load: "
        f"{median(cold, 'scan_and_load'):.3f}s)"
    )
    print(f"ratio={w / c:.3f}")


if __name__ == "__main__":
    main()
