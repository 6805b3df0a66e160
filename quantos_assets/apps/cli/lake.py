"""`quantos lake snapshots PIPELINE OUT`: the snapshots a table still has, newest first.

What a ref (`runtime_params.refs`) can pin: each snapshot's id, when it was committed, what
wrote it (the Dagster run, or the Trino query) and its row counts. Metadata only.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    rows = [_row(s) for s in sorted(table.snapshots(), key=lambda s: -s.timestamp_ms)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    print(f"{'snapshot_id':>20}  {'committed (UTC)':<25} {'operation':<10} {'rows':>10}  by")
    for row in rows:
        print(
            f"{row['snapshot_id']:>20}  {row['committed']:<25} {row['operation']:<10} "
            f"{row['rows'] if row['rows'] is not None else '':>10}  {row['by']}"
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
