"""`quantos logs SUBMISSION [--node N] [--follow]`: a submission's log as keyed JSON lines.

Read over the webserver's GraphQL (QUANTOS_DAGSTER_URL or --dagster-url) with the same
client the gateway uses, so it works from a laptop against any deployment and needs no
access to the instance's database. Each line has the keys of the JSON lines runs write to
stdout for Loki (`quantos_assets/observability/node_logs.py`), so one parser reads both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_ERROR = 0, 1, 2
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "logs", help="print a submission's log as JSON lines keyed by submission, pipeline and node"
    )
    p.add_argument("submission_id", help="the runtime params' submission_id")
    p.add_argument("--node", help="only this node's lines")
    p.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the run finishes"
    )
    p.add_argument(
        "--dagster-url",
        help="the Dagster webserver (default QUANTOS_DAGSTER_URL or http://127.0.0.1:3000)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between polls with --follow (default 1)",
    )
    p.set_defaults(handler=cmd_logs)


def keyed_line(line: dict[str, Any]) -> dict[str, Any]:
    """A client log line in the field order of the JSON lines runs write (LOG_FIELDS)."""
    from quantos_assets.observability.node_logs import LOG_FIELDS, iso_timestamp

    values = {
        "timestamp": iso_timestamp(line["time"]),
        "level": line["level"],
        "submission_id": line["submission_id"],
        "pipeline_id": line["pipeline_id"],
        "node_id": line["node"],
        "run_id": line["run_id"],
        "event": line["event"],
        "message": line["message"],
    }
    return {key: values[key] for key in LOG_FIELDS}


def cmd_logs(args: argparse.Namespace) -> int:
    from quantos_assets.apps.client.graphql import DagsterAPIError
    from quantos_assets.apps.client.submissions import QuantosClient, SubmissionError
    from resources.profile import active_profile

    if args.interval <= 0:
        print(f"quantos logs: --interval must be positive, got {args.interval:g}", file=sys.stderr)
        return EXIT_INVALID
    url = args.dagster_url or active_profile().dagster_url
    client = QuantosClient(url)
    try:
        return _print_logs(client, args)
    except SubmissionError as err:
        print(f"quantos logs: {err}", file=sys.stderr)
        return EXIT_INVALID
    except DagsterAPIError as err:
        print(f"quantos logs: {err}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.api.close()


def _print_logs(client: Any, args: argparse.Namespace) -> int:
    printed, run_id = 0, None
    while True:
        # Status before the lines: when it says finished, the lines read after it are all there are.
        status = client.status(args.submission_id)
        lines = client.logs(args.submission_id, args.node)
        current = lines[0]["run_id"] if lines else status["run_id"]
        if current != run_id:  # a retry is a new run: its log starts from the top
            printed, run_id = 0, current
        for line in lines[printed:]:
            print(json.dumps(keyed_line(line)), flush=True)
        printed = len(lines)
        done = status["status"] in FINISHED and status["run_id"] == run_id
        if not args.follow or done:
            break
        time.sleep(args.interval)
    if args.node and not lines and status["status"] in FINISHED:
        nodes = sorted(s["node"] for s in status["steps"])
        if args.node not in nodes:
            print(
                f"quantos logs: submission {args.submission_id} ran no node {args.node!r} "
                f"(it ran: {', '.join(nodes) or 'none'})",
                file=sys.stderr,
            )
            return EXIT_INVALID
    return EXIT_OK
