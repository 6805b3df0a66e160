"""`quantos registry locations`: which code location serves how many pipelines.
`quantos registry workspace`: the workspace for the teams file's locations (workspace.yaml,
or the Helm chart's user-code deployments with `--helm`).
`quantos registry reload`: reload the code locations of a pipeline, a team or by name, and
nothing else (each reload restarts that location's code server only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantos_assets.registry_locations import RegistryLocations


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser("registry", help="the spec registry's code locations")
    verbs = registry.add_subparsers(dest="registry_command", required=True)
    locations = verbs.add_parser(
        "locations", help="each code location and its pipeline count (warns past the shard size)"
    )
    locations.add_argument("--json", action="store_true", help="one JSON object")
    which = locations.add_mutually_exclusive_group()
    which.add_argument("--pipeline", help="only the location serving this pipeline_id")
    which.add_argument("--team", help="only this team's locations (its shards)")
    locations.set_defaults(handler=cmd_locations)
    reload = verbs.add_parser(
        "reload",
        help="reload only the code locations serving a pipeline, a team, or those named "
        "(Dagster at QUANTOS_DAGSTER_URL)",
    )
    reload.add_argument("locations", nargs="*", metavar="LOCATION", help="location names")
    reload.add_argument("--pipeline", action="append", default=[], help="its location (repeatable)")
    reload.add_argument("--team", action="append", default=[], help="its locations (repeatable)")
    reload.add_argument(
        "--dagster-url", help="the Dagster webserver (default: the profile's QUANTOS_DAGSTER_URL)"
    )
    reload.set_defaults(handler=cmd_reload)
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


def registry_locations() -> RegistryLocations:
    """Where each registered pipeline is served, under the profile's teams file."""
    from quantos_assets.registry_locations import RegistryLocations
    from quantos_assets.tenancy.teams import load_teams
    from resources.profile import active_profile

    profile = active_profile()
    teams = load_teams(profile.teams_file, required=profile.teams_file_named)
    return RegistryLocations.read(profile.specs_dir, teams)


def cmd_locations(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.main import EXIT_INVALID, EXIT_OK
    from quantos_assets.tenancy.locations import SHARD_ADVICE

    place = registry_locations()
    if args.pipeline:
        where = place.location_of(args.pipeline)
        if where is None:
            print(f"quantos: error: no registered pipeline {args.pipeline!r}", file=sys.stderr)
            return EXIT_INVALID
        print(json.dumps({"pipeline": args.pipeline, "location": where}) if args.json else where)
        return EXIT_OK
    counts = place.counts()
    if args.team:
        if args.team not in place.plan.shards:
            print(f"quantos: error: --team {args.team}: not in the teams file", file=sys.stderr)
            return EXIT_INVALID
        counts = {n: c for n, c in counts.items() if place.plan.team_of(n) == args.team}
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

    place = registry_locations()
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


class _Unknown(ValueError):
    """A --pipeline, --team or location name the registry does not have."""


def chosen_locations(
    place: RegistryLocations, names: list[str], pipelines: list[str], teams: list[str]
) -> list[str]:
    """The locations named, serving `pipelines`, or of `teams`, in the workspace's order;
    raises _Unknown naming the first that is none of the registry's."""
    chosen: set[str] = set()
    for name in names:
        if name not in place.plan.names():
            raise _Unknown(f"{name}: no such code location (quantos registry locations)")
        chosen.add(name)
    for pipeline in pipelines:
        where = place.location_of(pipeline)
        if where is None:
            raise _Unknown(f"--pipeline {pipeline}: no registered pipeline")
        chosen.add(where)
    for team in teams:
        if team not in place.plan.shards:
            raise _Unknown(f"--team {team}: not in the teams file")
        chosen |= {n for n in place.plan.team_locations() if place.plan.team_of(n) == team}
    return [n for n in place.plan.names() if n in chosen]


def reload_locations(url: str, locations: list[str]) -> int:
    """Reload each location through Dagster's GraphQL, one line each; exit 2 on the first
    that fails (its load error's root cause in one line)."""
    from quantos_assets.apps.cli.main import EXIT_ERROR, EXIT_OK
    from quantos_assets.apps.client.graphql import DagsterAPI, DagsterAPIError

    api = DagsterAPI(url)
    try:
        for name in locations:
            started = time.monotonic()
            api.reload_location(name)
            print(f"reloaded {name} ({time.monotonic() - started:.1f} s)")
    except DagsterAPIError as err:
        print(f"quantos: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        api.close()
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.main import EXIT_INVALID
    from resources.profile import active_profile

    if not (args.locations or args.pipeline or args.team):
        print("quantos: error: name a LOCATION, --pipeline or --team", file=sys.stderr)
        return EXIT_INVALID
    try:
        chosen = chosen_locations(registry_locations(), args.locations, args.pipeline, args.team)
    except _Unknown as err:
        print(f"quantos: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    return reload_locations(args.dagster_url or active_profile().dagster_url, chosen)
