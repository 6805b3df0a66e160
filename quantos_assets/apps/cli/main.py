"""`quantos`: the command line for researchers, CI and operators.

Exit codes: 0 success, 1 invalid input or a failed run, 2 usage or an
unexpected internal error (reported as one line; QUANTOS_DEBUG=1 shows more),
141 the reader of stdout went away (`quantos logs ... | head`), quietly, as Unix tools do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from quantos_assets.spec.errors import SpecError

if TYPE_CHECKING:  # imported where used: `quantos --help` stays fast
    import datetime as dt

    from quantos_assets.pipeline_assets import PipelineDefs
    from quantos_assets.spec.loader import LoadedSpec

EXIT_OK, EXIT_INVALID, EXIT_ERROR = 0, 1, 2
EXIT_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Dagster's preview/beta notices are for library authors, not for CLI users.
    warnings.filterwarnings("ignore", message=r".*(is currently in preview|is currently in beta).*")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_PIPE
    except SpecError as err:
        print(str(err), file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("quantos: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the user gets one line, never a traceback
        if os.environ.get("QUANTOS_DEBUG"):
            raise
        from resources.redaction import redact

        print(
            redact(f"quantos: error: {type(err).__name__}: {err}".splitlines()[0]), file=sys.stderr
        )
        return EXIT_ERROR


def _stdout_gone() -> None:
    """Point stdout at /dev/null so the interpreter's last flush of the unwritten buffer does
    not raise BrokenPipeError again (the recipe of Python's signal module documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quantos", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate spec files or directories (exit 1 on any error)")
    v.add_argument(
        "paths", nargs="+", type=Path, help="spec files (.yaml, .yml, .json) or directories of them"
    )
    v.add_argument(
        "--team",
        help=(
            "check python_task entrypoints and external inputs against this team's allow-list "
            "and read grants (deploy/teams.yaml, QUANTOS_TEAMS) "
            "instead of the spec's labels.team (a spec without either gets the defaults')"
        ),
    )
    v.set_defaults(handler=cmd_validate)

    s = sub.add_parser("schema", help="print the JSON Schema of the DAG spec")
    s.add_argument(
        "--runtime-params", action="store_true", help="the runtime params schema instead"
    )
    s.set_defaults(handler=cmd_schema)

    c = sub.add_parser("compile", help="show the assets a spec compiles to")
    c.add_argument("path", type=Path, help="a spec file")
    c.add_argument(
        "--json", action="store_true", help="JSON, with each asset's kinds, owners and tags"
    )
    c.set_defaults(handler=cmd_compile)

    r = sub.add_parser("run", help="materialize a spec on the active profile")
    r.add_argument("path", type=Path, help="a spec file")
    r.add_argument("--select", nargs="+", metavar="NODE", help="only these nodes")
    r.add_argument("--params", type=Path, help="runtime params (JSON/YAML file)")
    r.set_defaults(handler=cmd_run)

    from quantos_assets.apps.cli.manifests import add_parser as add_manifests_parser

    add_manifests_parser(sub)

    from quantos_assets.apps.cli.explain import add_parser as add_explain_parser

    add_explain_parser(sub)

    from quantos_assets.apps.cli.lake import add_parser as add_lake_parser

    add_lake_parser(sub)

    from quantos_assets.apps.cli.sessions import add_parser as add_sessions_parser

    add_sessions_parser(sub)

    from quantos_assets.apps.cli.access import add_parsers as add_access_parsers
    from quantos_assets.apps.cli.gateway import add_parser as add_gateway_parser

    add_gateway_parser(sub)
    add_access_parsers(sub)

    from quantos_assets.apps.cli.register import add_parser as add_register_parser

    add_register_parser(sub)

    from quantos_assets.apps.cli.exporter import add_parser as add_exporter_parser

    add_exporter_parser(sub)

    from quantos_assets.apps.cli.logs import add_parser as add_logs_parser

    add_logs_parser(sub)

    from quantos_assets.apps.cli.registry import add_parser as add_registry_parser

    add_registry_parser(sub)

    t = sub.add_parser("ticks", help="preview a spec's schedule: every fire time and its partition")
    t.add_argument("path", type=Path, help="a spec file with a schedule block")
    t.add_argument("--start", required=True, type=_iso_date, help="first session date (YYYY-MM-DD)")
    t.add_argument("--end", required=True, type=_iso_date, help="last session date (YYYY-MM-DD)")
    t.add_argument("--json", action="store_true", help="a JSON list of {time, partition}")
    t.set_defaults(handler=cmd_ticks)
    return p


def _iso_date(text: str) -> dt.date:
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    from quantos_assets.admission.registry_view import DirectoryRegistry
    from quantos_assets.apps.cli.team_grants import check_team_grants
    from quantos_assets.spec_registry import spec_files
    from quantos_assets.spec_rules.firm import load_spec
    from quantos_assets.tenancy.teams import load_teams
    from resources.profile import active_profile, teams_setting

    files: list[Path] = []
    for path in args.paths:
        if path.is_dir():
            files.extend(spec_files(path))
        else:
            files.append(path)
    if not files:
        print("quantos: no spec files found", file=sys.stderr)
        return EXIT_INVALID
    teams = load_teams(*teams_setting())  # a broken teams file is one line and exit 2
    pipelines = DirectoryRegistry(active_profile().specs_dir).pipelines()
    failed = 0
    for path in files:
        try:
            loaded = load_spec(path)
            _check_placement(loaded)
            check_team_grants(loaded, teams, args.team, pipelines)
        except SpecError as err:
            failed += 1
            print(str(err), file=sys.stderr)
            continue
        print(f"ok  {path}  ({loaded.spec.pipeline_id}, {len(loaded.spec.nodes)} nodes)")
    print(f"{len(files) - failed} valid, {failed} invalid", file=sys.stderr)
    return EXIT_INVALID if failed else EXIT_OK


def _check_placement(loaded: LoadedSpec) -> PipelineDefs:
    from quantos_assets.pipeline_assets import build_pipeline
    from quantos_assets.placement import PlacementError
    from resources.profile import active_profile

    try:
        return build_pipeline(loaded, active_profile())
    except PlacementError as err:
        raise SpecError([f"{loaded.path}:1: resources: {err}"]) from None


def cmd_schema(args: argparse.Namespace) -> int:
    from quantos_assets.spec import json_schema

    schema = (
        json_schema.runtime_params_json_schema()
        if args.runtime_params
        else json_schema.spec_json_schema()
    )
    print(json.dumps(schema, indent=2))
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from quantos_assets.compiled_graph import describe_pipeline
    from quantos_assets.spec_rules.firm import load_spec

    pipeline = _check_placement(load_spec(args.path))
    graph = describe_pipeline(pipeline)
    if args.json:
        print(json.dumps(graph, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"pipeline {graph['pipeline_id']}  job {graph['job']}")
    print("run tags: " + ", ".join(f"{k}={v}" for k, v in graph["run_tags"].items()))
    for a in graph["assets"]:
        retry = a["retry"]
        retry_txt = (
            f"retries={retry['max_retries']} delay={retry['delay_sec']}s" if retry else "no retry"
        )
        print(f"  {a['key']:<40} node={a['node']} kind={a['kind']} pool={a['pool']} {retry_txt}")
        for dep in a["deps"]:
            print(f"      <- {dep}")
    gates = graph.get("gates")
    if gates:
        print(f"gate {gates['checks_op']} pool={gates['checks_pool']}: blocking checks")
        for check in gates["checks"]:
            print(f"  {check['key']:<40} {check['description']}")
        for stage in gates["stages"]:
            print(f"  {stage['key']:<40} stage")
            for dep in stage["deps"]:
                print(f"      <- {dep}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.local_run import run_spec

    return run_spec(args.path, select=args.select, params_path=args.params)


def cmd_ticks(args: argparse.Namespace) -> int:
    from quantos_assets.calendars.ticks import ticks_between
    from quantos_assets.spec_rules.firm import load_spec

    spec = load_spec(args.path).spec
    if spec.schedule is None:
        raise SpecError(
            [f"{args.path}:1: schedule: this spec has no schedule block, so it never fires"]
        )
    if args.end < args.start:
        print(f"quantos: --end {args.end} is before --start {args.start}", file=sys.stderr)
        return EXIT_INVALID
    ticks = ticks_between(spec.schedule, args.start, args.end)
    if args.json:
        print(
            json.dumps(
                [{"time": t.time.isoformat(), "partition": t.partition} for t in ticks], indent=2
            )
        )
        return EXIT_OK
    for tick in ticks:
        print(f"{tick.time.isoformat()}  {tick.partition}")
    print(f"{len(ticks)} ticks", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
