"""`quantos lake snapshots PIPELINE OUT`: the snapshots a table still has, newest first.
`quantos lake maintain`: one lake maintenance pass now (what the daily schedule runs).

`snapshots` shows what a ref (`runtime_params.refs`) can pin: each snapshot's id, when it was
committed, what wrote it (the Dagster run, or the Trino query), its row counts, and the pins
(Iceberg tags) that keep it. Metadata only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lake = sub.add_parser("lake", help="the lake's tables (snapshots a ref can pin)")
    verbs = lake.add_subparsers(dest="lake_command", required=True)
    snapshots = verbs.add_parser("snapshots", help="a table's snapshots, newest first")
    snapshots.add_argument("pipeline", help="the pipeline_id (the table's namespace)")
    snapshots.add_argument("out", help="the out (the table)")
    snapshots.add_argument("--json", action="store_true", help="one JSON object per line")
    snapshots.set_defaults(handler=cmd_snapshots)
    maintain = verbs.add_parser(
        "maintain",
        help="one maintenance pass: pins, ttl_days, compaction, expiry, orphans (audited)",
    )
    maintain.add_argument(
        "--pipeline",
        action="append",
        default=None,
        help="only this pipeline's tables (repeatable; default: every registered pipeline)",
    )
    maintain.add_argument(
        "--team",
        action="append",
        default=[],
        help="only the tables of this team's pipelines (repeatable)",
    )
    maintain.add_argument("--json", action="store_true", help="one JSON object per action")
    maintain.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the pass would do (decision `planned`); change, delete and audit nothing",
    )
    maintain.set_defaults(handler=cmd_maintain)


def cmd_maintain(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.instance import dagster_home_instance
    from quantos_assets.apps.cli.main import EXIT_ERROR, EXIT_INVALID, EXIT_OK
    from quantos_assets.lake.upkeep import maintain
    from quantos_assets.spec_registry import scan_specs
    from resources.profile import active_profile, build_resources

    profile = active_profile()
    teams = {
        entry.pipeline_id: entry.team or "-" for entry in scan_specs(profile.specs_dir).entries
    }
    if args.pipeline:
        unknown = sorted(set(args.pipeline) - set(teams))
        if unknown:
            print(f"quantos: --pipeline {unknown[0]}: no registered pipeline", file=sys.stderr)
            return EXIT_INVALID
        teams = {p: teams[p] for p in args.pipeline}
    if args.team:
        unknown = sorted(set(args.team) - set(teams.values()))
        if unknown:
            print(f"quantos: --team {unknown[0]}: owns no registered pipeline", file=sys.stderr)
            return EXIT_INVALID
        teams = {p: t for p, t in teams.items() if t in args.team}
    resources = build_resources(profile)
    report = maintain(
        dagster_home_instance(),
        resources["io_manager"],
        resources["artifact_store"],
        resources["audit"].log(),
        teams,
        profile.lake_upkeep,
        dry_run=args.dry_run,
    )
    for action in report.actions:
        if args.json:
            print(json.dumps({**asdict(action)}, default=str))
        else:
            print(f"{action.action:<13} {action.decision:<8} {action.subject}: {action.detail}")
    for note in report.notes:
        print(f"quantos: note: {note}", file=sys.stderr)
    for problem in report.problems:
        print(f"quantos: not maintained: {problem}", file=sys.stderr)
    if not args.json:
        print(f"{len(report.actions)} action(s) over {len(teams)} pipeline(s)")
    return EXIT_ERROR if report.problems else EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    from pyiceberg.exceptions import NoSuchTableError

    from quantos_assets.apps.cli.main import EXIT_INVALID, EXIT_OK
    from resources.iceberg_tables import unavailable_as_lake_error
    from resources.profile import active_profile, build_resources

    lake = build_resources(active_profile())["io_manager"]
    catalog = lake.catalog()
    name = f"{args.pipeline}.{args.out}"
    with unavailable_as_lake_error(catalog, name, "reading"):
        try:
            table = catalog.load_table((args.pipeline, args.out))
        except NoSuchTableError:
            print(f"quantos: {name} does not exist in the lake", file=sys.stderr)
            return EXIT_INVALID
    pins: dict[int, list[str]] = {}
    for name, ref in table.metadata.refs.items():
        if name != "main":
            pins.setdefault(ref.snapshot_id, []).append(name)
    rows = [
        {**_row(s), "pins": sorted(pins.get(s.snapshot_id, []))}
        for s in sorted(table.snapshots(), key=lambda s: -s.timestamp_ms)
    ]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    print(f"{'snapshot_id':>20}  {'committed (UTC)':<25} {'operation':<10} {'rows':>10}  by")
    for row in rows:
        print(
            f"{row['snapshot_id']:>20}  {row['committed']:<25} {row['operation']:<10} "
            f"{row['rows'] if row['rows'] is not None else '':>10}  {row['by']}"
            + (f"  pinned by {', '.join(row['pins'])}" if row["pins"] else "")
        )
    return EXIT_OK


def _row(snapshot: Any) -> dict[str, Any]:
    summary = dict(snapshot.summary.additional_properties) if snapshot.summary else {}
    operation = snapshot.summary.operation.value if snapshot.summary else ""
    total = summary.get("total-records")
    run, query = summary.get("dagster.run-id"), summary.get("trino_query_id")
    return {
        "snapshot_id": snapshot.snapshot_id,
        "committed": datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC).isoformat(
            timespec="seconds"
        ),
        "operation": operation,
        "rows": int(total) if total is not None else None,
        "by": f"run {run}" if run else (f"trino query {query}" if query else ""),
    }
