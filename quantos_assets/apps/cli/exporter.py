"""`quantos exporter --port PORT`: Prometheus metrics of the instance at DAGSTER_HOME (and
Kafka lag where QUANTOS_KAFKA_BOOTSTRAP is set)."""

from __future__ import annotations

import argparse
import threading


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser(
        "exporter", help="serve Prometheus metrics of the Dagster instance (DAGSTER_HOME)"
    )
    e.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 in a pod)",
    )
    e.add_argument("--port", type=int, default=9464, help="port of /metrics (default 9464)")
    e.set_defaults(handler=cmd_exporter)


def cmd_exporter(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from quantos_assets.apps.cli.instance import dagster_home_instance
    from quantos_assets.observability.metrics_registry import metrics_registry

    registry = metrics_registry(dagster_home_instance(create=False))
    start_http_server(args.port, addr=args.host, registry=registry)
    print(f"quantos exporter: http://{args.host}:{args.port}/metrics", flush=True)
    threading.Event().wait()
    return 0
