"""`quantos registry locations`: which code location serves how many pipelines.
`quantos registry workspace`: the workspace for the teams file's locations (workspace.yaml,
or the Helm chart's user-code deployments with `--helm`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser("registry", help="the spec registry's code locations")
    verbs = registry.add_subparsers(dest="registry_command", required=True)
    locations = verbs.add_parser(
        "locations", help="each code location and its pipeline count (warns past the shard size)"
    )
    locations.add_argument("--json", action="store_true", help="one JSON object")
    locations.add_argument("--pipeline", help="only the location serving this pipeline_id")
    locations.set_defaults(handler=cmd_locations)
    workspace = verbs.add_parser(
        "workspace", help="print the workspace of the teams file's code locations"
    )
    workspace.add_argument(
        "--helm",
        type=Path,
        metavar="VALUES",
        help="print these Helm values instead, with one dagster-user-deployments entry per "
        "location, each a copy of the file's first (every other line kept as it is)",
    )
    workspace.add_argument(
        "--write", type=Path, metavar="FILE", help="write it to FILE instead of stdout"
    )
    workspace.add_argument(
        "--used",
        action="store_true",
        help="only the platform's location and those serving a registered pipeline (a small "
        "deployment; a team's first pipeline then needs the workspace regenerated)",
    )
    workspace.set_defaults(handler=cmd_workspace)


def _locations() -> Any:
    from quantos_assets.registry_locations import RegistryLocations
    from quantos_assets.tenancy.teams import load_teams
    from resources.profile import active_profile

    profile = active_profile()
    teams = load_teams(profile.teams_file, required=profile.teams_file_named)
    return RegistryLocations.read(profile.specs_dir, teams)


def cmd_locations(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.main import EXIT_INVALID, EXIT_OK
    from quantos_assets.tenancy.locations import SHARD_ADVICE

    place = _locations()
    if args.pipeline:
        where = place.location_of(args.pipeline)
        if where is None:
            print(f"quantos: error: no registered pipeline {args.pipeline!r}", file=sys.stderr)
            return EXIT_INVALID
        print(json.dumps({"pipeline": args.pipeline, "location": where}) if args.json else where)
        return EXIT_OK
    counts = place.counts()
    if args.json:
        print(json.dumps({"locations": counts, "shard_advice": SHARD_ADVICE}))
    else:
        for name, count in counts.items():
            print(f"{name}\t{count}")
    for name, count in counts.items():
        team = place.plan.team_of(name)
        if count > SHARD_ADVICE and team is not None:
            print(
                f"quantos: warning: {name} serves {count} pipelines (> {SHARD_ADVICE}): raise "
                f"teams.{team}.shards and regenerate the workspace",
                file=sys.stderr,
            )
    return EXIT_OK


def cmd_workspace(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.main import EXIT_INVALID, EXIT_OK
    from quantos_assets.tenancy.workspace_file import HelmValuesError, helm_values, workspace_yaml

    place = _locations()
    plan = place.plan
    if args.helm is None:
        text = workspace_yaml(plan, place.used() if args.used else None)
    else:
        try:
            text = helm_values(args.helm.read_text(), plan)
        except (OSError, HelmValuesError) as err:
            print(f"quantos: error: {args.helm}: {err}", file=sys.stderr)
            return EXIT_INVALID
    if args.write is None:
        sys.stdout.write(text)
    else:
        args.write.write_text(text)
    return EXIT_OK
