"""`quantos gateway`: serve the REST submission API (uvicorn)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser(
        "gateway", help="serve the REST submission API (Dagster at QUANTOS_DAGSTER_URL)"
    )
    g.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 in a pod)",
    )
    g.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    g.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    g.add_argument(
        "--dagster-url",
        help="the Dagster webserver to launch runs on (overrides QUANTOS_DAGSTER_URL; default http://127.0.0.1:3000)",
    )
    g.set_defaults(handler=cmd_gateway)


def cmd_gateway(args: argparse.Namespace) -> int:
    """Exit 1 with one line when the audit trail cannot be written as it must be (no key, the
    wrong key, no anchor, an unlocked anchor bucket): a gateway never runs unaudited."""
    import uvicorn

    from resources.audit_log import AuditError

    try:
        return _serve(args, uvicorn)
    except AuditError as err:
        print(f"quantos: audit trail: {err}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, uvicorn: Any) -> int:
    from quantos_assets.apps.gateway.dagster_reachability import check_dagster_url, startup_warning

    if args.dagster_url:
        # The environment, so uvicorn's worker processes (which read it) get the same URL.
        os.environ["QUANTOS_DAGSTER_URL"] = check_dagster_url(args.dagster_url, "--dagster-url")
    from quantos_assets.apps.gateway.settings import gateway_settings
    from quantos_assets.tenancy.teams import load_teams

    # A bad setting or teams file is one line here rather than a traceback from every worker.
    settings = gateway_settings()
    check_dagster_url(settings.dagster_url, "QUANTOS_DAGSTER_URL")
    load_teams(settings.teams_path, required=settings.teams_required)
    warning = startup_warning(settings.dagster_url)
    if warning is not None:
        print(f"quantos gateway: warning: {warning}", file=sys.stderr, flush=True)
    if args.workers > 1:
        settings.audit.writer()  # the key, the anchor and the schema, checked once here
        uvicorn.run(
            "quantos_assets.apps.gateway.server:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="info",
        )
        return 0
    from quantos_assets.apps.gateway.server import build_app

    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="info")
    return 0
