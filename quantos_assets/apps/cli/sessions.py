"""`quantos sessions sync`: register a spec's sessions as partition keys in the instance.

The daemon's sync sensor does this hourly; a fresh instance used only through the
CLI (CI running `dagster asset materialize --partition-range`) has no daemon, so
the keys must be addable on demand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_INVALID = 0, 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("sessions", help="manage a spec's session partitions")
    actions = s.add_subparsers(dest="action", required=True)
    sync = actions.add_parser("sync", help="add every session from partitions.start to today")
    sync.add_argument("paths", nargs="+", type=Path, help="spec files or directories")
    sync.set_defaults(handler=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.instance import dagster_home_instance
    from quantos_assets.calendars.partitions import missing_session_keys, partitions_name
    from quantos_assets.spec_registry import spec_files
    from quantos_assets.spec_rules.firm import load_spec

    files = [f for p in args.paths for f in (spec_files(p) if p.is_dir() else [p])]
    specs = [load_spec(f).spec for f in files]
    partitioned = [s for s in specs if s.partitions is not None]
    if not partitioned:
        print("quantos: none of these specs has a partitions block", file=sys.stderr)
        return EXIT_INVALID
    instance = dagster_home_instance(create=True)
    for spec in partitioned:
        name = partitions_name(spec)
        missing = missing_session_keys(spec, set(instance.get_dynamic_partitions(name)))
        if missing:
            instance.add_dynamic_partitions(name, missing)
        total = len(instance.get_dynamic_partitions(name))
        span = f" ({missing[0]} .. {missing[-1]})" if missing else ""
        print(f"{spec.pipeline_id}: added {len(missing)} sessions{span}, {total} in all")
    return EXIT_OK
