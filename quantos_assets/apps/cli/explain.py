"""`quantos explain SPEC NODE [--profile prod]`: the exact statements a SQL node would send.

Locally (the default) the DuckDB statement of each out, with its bound values; in prod form
the Trino statements, each input pinned at the snapshot its upstream records at run time
(shown as a name, since no catalog is asked), the outs written by Trino, and the lookup of
the snapshot each write commits. Neither form needs a server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROFILES = ("local", "prod")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("explain", help="print the statements a SQL node would send")
    e.add_argument("path", type=Path, help="a spec file")
    e.add_argument("node", help="the node's id (a trino_sql or spark_sql node)")
    e.add_argument(
        "--profile",
        choices=PROFILES,
        default="local",
        help="local: DuckDB in the step; prod: inside Trino (staging is the same as prod)",
    )
    e.add_argument("--session", help="the session partition (session-partitioned pipelines)")
    e.add_argument("--catalog", default="iceberg", help="Trino's Iceberg catalog (prod form)")
    e.set_defaults(handler=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from quantos_assets.apps.cli.main import EXIT_INVALID, EXIT_OK
    from quantos_assets.kinds.base import NodeRun, NodeRunError
    from quantos_assets.kinds.sql import SqlRunner, node_sources
    from quantos_assets.kinds.sql_sources import (
        SqlUriError,
        decode_sql,
        read_spec_relative,
        store_relpath,
    )
    from quantos_assets.kinds.trino_statements import Pin, StatementError
    from quantos_assets.spec.models import NodeKind
    from quantos_assets.spec_rules.firm import load_spec

    loaded = load_spec(args.path)
    spec = loaded.spec
    node = next((n for n in spec.nodes if n.id == args.node), None)
    if node is None or node.kind not in (NodeKind.trino_sql, NodeKind.spark_sql):
        what = "no node" if node is None else f"a {node.kind.value} node"
        print(f"{args.path}: {args.node!r} is {what}; explain shows SQL nodes", file=sys.stderr)
        return EXIT_INVALID
    if (spec.partitions is not None) != (args.session is not None):
        need = "needs --session" if spec.partitions is not None else "has no partitions"
        print(f"{args.path}: pipeline {spec.pipeline_id} {need}", file=sys.stderr)
        return EXIT_INVALID
    spec_dir = args.path.resolve().parent

    def read_uri(uri: str) -> str:
        """Spec-relative, or from the active profile's artifact store (what a step reads)."""
        if "://" not in uri:
            return read_spec_relative(spec_dir, uri)
        from resources.profile import active_profile, build_resources

        store = build_resources(active_profile())["artifact_store"]
        return decode_sql(uri, store.get(store_relpath(store, uri)))

    runner = SqlRunner(dialect="trino" if node.kind is NodeKind.trino_sql else "spark")
    run = NodeRun(spec, node, spec_dir, {}, args.session)
    keys = (args.session,) if args.session is not None else None
    try:
        sources, from_files = node_sources(run, read_uri)
        if args.profile == "local":
            parameters = node.params.get("parameters") or {}
            for out in node.outs:
                sql, used = runner.transpile(sources[out], run.label, out, from_file=from_files)
                bound = {name: parameters.get(name) for name in sorted(used)}
                print(f"-- {spec.pipeline_id}.{out} on DuckDB in the step (bound: {bound})")
                print(f"{sql};")
            return EXIT_OK
        # An external input is a whole table (no session partitions of ours), in its namespace.
        inputs = {
            i: Pin(*spec.input_table(i), _PENDING, None if i in spec.external_inputs else keys)
            for i in node.ins
        }
        statements = runner.trino_statements(run, sources, inputs, args.catalog, from_files)
    except SqlUriError as err:
        print(f"{args.path}: node {node.id}: sql_uri {err}", file=sys.stderr)
        return EXIT_INVALID
    except (NodeRunError, StatementError) as err:
        print(str(err), file=sys.stderr)
        return EXIT_INVALID
    print(f"-- {spec.pipeline_id}.{node.id} inside Trino (catalog {args.catalog})")
    for statement in statements:
        print(statement.shown().replace(_PENDING_TEXT, "<snapshot its upstream recorded>"))
    return EXIT_OK


# An input's snapshot is known only at run time: this stand-in is replaced in the output.
_PENDING = 999_999_999_999_999_999
_PENDING_TEXT = str(_PENDING)
