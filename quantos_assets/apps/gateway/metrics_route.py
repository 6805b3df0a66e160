"""GET /metrics on the gateway: the exporter's collectors, so one Service can be scraped.

The gateway otherwise reaches Dagster only through GraphQL; these metrics read the instance's
run storage (DAGSTER_HOME, i.e. dagster.yaml with the PostgreSQL URL) like `quantos exporter`.
The instance is opened at the first scrape, not at start-up, so a gateway deployed without
DAGSTER_HOME still serves the API and answers /metrics with a 503 that says what is missing.
Like /healthz it needs no token (Prometheus scrapes it; restrict it by network policy).
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


def build_metrics_router() -> APIRouter:
    router = APIRouter()
    lock = threading.Lock()
    built: list[CollectorRegistry] = []

    def registry() -> CollectorRegistry:
        with lock:
            if not built:
                from dagster import DagsterInstance

                from quantos_assets.observability.metrics_registry import metrics_registry

                built.append(metrics_registry(DagsterInstance.get()))
            return built[0]

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        from dagster._core.errors import DagsterHomeNotSetError, DagsterInvariantViolationError

        try:
            current = registry()
        except (DagsterHomeNotSetError, DagsterInvariantViolationError) as err:
            first = (
                str(err).strip().splitlines()[0].strip() if str(err).strip() else type(err).__name__
            )
            return PlainTextResponse(
                f"metrics need the Dagster instance (set DAGSTER_HOME on the gateway): {first}\n",
                status_code=503,
            )
        # The exposition format Prometheus asks for (text, or OpenMetrics), as the exporter does.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(current), media_type=content_type)

    return router
