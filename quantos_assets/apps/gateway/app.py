"""The REST submission gateway (seed 000 §8): authenticated, team-scoped, audited.

It talks to Dagster over GraphQL only (through `QuantosClient`), so it runs beside the
webserver (or anywhere that reaches it) and adds what Dagster OSS lacks for a compiler
calling it: bearer-token authentication with scopes, team ownership of submissions,
per-team quotas, an append-only audit trail, and 4xx answers that say what to fix.

The endpoints are one router per resource (routes_*.py, metrics_route.py), the bodies they
read and answer are in schemas.py, and every route reaches the gateway's parts through the
`CurrentGateway` dependency (wiring.py): this module only assembles the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from quantos_assets.apps.gateway import routes_health, routes_jobs, routes_submissions
from quantos_assets.apps.gateway.error_handlers import install_error_handlers
from quantos_assets.apps.gateway.metrics_route import build_metrics_router
from quantos_assets.apps.gateway.request_body import RequestBodyMiddleware
from quantos_assets.apps.gateway.routes_jobs_page import install_jobs_page
from quantos_assets.apps.gateway.settings import GatewaySettings
from quantos_assets.apps.gateway.wiring import Gateway, build_gateway
from quantos_assets.observability.traces import close_tracing
from resources.redaction import install_log_redaction

API_VERSION = "1"


def create_app(settings: GatewaySettings, gateway: Gateway | None = None) -> FastAPI:
    """The gateway's app over `gateway` (built from `settings` when not given), with its
    launch dispatcher started."""
    install_log_redaction()  # before anything logs: QUANTOS_DAGSTER_URL may carry a password
    gw = gateway or build_gateway(settings)
    app = FastAPI(
        title="QuantOS submission API",
        version=API_VERSION,
        description=(
            "Submit compiler DAG specs, follow, cancel and retry them. Bearer token required."
        ),
        lifespan=_lifespan,
    )
    app.add_middleware(RequestBodyMiddleware, max_bytes=settings.max_body_bytes)
    app.state.gateway = gw  # what the routes' CurrentGateway dependency gives them
    gw.dispatcher.start()  # and re-queue what a previous gateway accepted but did not launch
    # In this order, the order of the paths in the OpenAPI document (docs/api/).
    app.include_router(routes_jobs.router)
    app.include_router(build_metrics_router())
    app.include_router(routes_health.router)
    app.include_router(routes_submissions.router)
    install_error_handlers(app)
    install_jobs_page(app)  # /jobs: the page for the jobs (not in the OpenAPI document)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # claims not in a launch call lapse now: a running gateway takes them
    app.state.gateway.dispatcher.stop()
    # the last submissions' spans: exported now (at most QUANTOS_OTLP_TIMEOUT), not lost
    await asyncio.to_thread(close_tracing)


__all__ = ["Gateway", "build_gateway", "create_app"]
