"""TrinoEngine up to the wire: what the `trino` client sends for a trino_sql query.

A loopback HTTP server plays the Trino coordinator (it is a real peer of the client: the same
POST /v1/statement and JSON protocol), so the test sees the exact statement, the bound values
and the session headers the profile sets.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from resources.sql_engine import SqlQueryError
from resources.trino_engine import TrinoEngine


class _Coordinator(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def _port(self) -> int:
        assert isinstance(self.server, ThreadingHTTPServer)
        return self.server.server_port

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.received.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        payload = {
            "id": "20260101_000000_00000_quant",
            "infoUri": f"http://127.0.0.1:{self._port()}/ui/query.html",
            "columns": [
                {
                    "name": "symbol",
                    "type": "varchar",
                    "typeSignature": {
                        "rawType": "varchar",
                        "arguments": [{"kind": "LONG", "value": 2147483647}],
                    },
                },
                {
                    "name": "n",
                    "type": "bigint",
                    "typeSignature": {"rawType": "bigint", "arguments": []},
                },
            ],
            "data": [["AAPL", 3], ["MSFT", 5]],
            "stats": {"state": "FINISHED"},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def coordinator():
    _Coordinator.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Coordinator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, _Coordinator.received
    server.shutdown()
    server.server_close()


def test_statement_sql_bound_values_and_session_on_the_wire(coordinator) -> None:
    port, received = coordinator
    engine = TrinoEngine(host="127.0.0.1", port=port, user="research", catalog="lake", schema="xs")
    with engine.session() as session:
        done = session.run(
            "SELECT symbol, COUNT(*) AS n FROM features WHERE day >= ? AND note = ? "
            "GROUP BY symbol",
            ["2025-01-02", "it's; DROP TABLE x"],
        )
    assert done.columns == ["symbol", "n"] and done.rows == [["AAPL", 3], ["MSFT", 5]]
    assert done.query_id == "20260101_000000_00000_quant"
    (request,) = received
    assert request["path"] == "/v1/statement"
    body = request["body"]
    # the query text carries `?` markers; the values travel in the USING clause the client writes
    assert body.startswith(
        "EXECUTE IMMEDIATE 'SELECT symbol, COUNT(*) AS n FROM features WHERE day >= ? AND note = ?"
    )
    assert body.endswith("GROUP BY symbol' USING '2025-01-02','it''s; DROP TABLE x'")
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-trino-user"] == "research"
    assert headers["x-trino-catalog"] == "lake"
    assert headers["x-trino-schema"] == "xs"


def test_unreachable_server_is_one_clear_line() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = TrinoEngine(host="127.0.0.1", port=port, request_timeout=5)
    with pytest.raises(SqlQueryError) as info, engine.session() as session:
        session.run("SELECT 1")
    assert (
        str(info.value)
        == f"trino at http://127.0.0.1:{port} is unreachable (QUANTOS_TRINO_HOST/PORT)"
    )


def test_prod_profile_binds_trino_from_env() -> None:
    from resources.profile import active_profile, build_resources

    env = {
        "QUANTOS_ENV": "prod",
        "QUANTOS_CATALOG_URI": "postgresql+psycopg2://u@db/lake",
        "QUANTOS_WAREHOUSE": "s3://lake/warehouse",
        "QUANTOS_ARTIFACTS": "s3://artifacts/quantos",
        "QUANTOS_TRINO_HOST": "trino.data.svc",
        "QUANTOS_TRINO_PORT": "8443",
        "QUANTOS_TRINO_USER": "quantos-prod",
        "QUANTOS_TRINO_CATALOG": "lake",
        "QUANTOS_TRINO_SCHEMA": "research",
    }
    engine = build_resources(active_profile(env))["sql_engine"]
    assert isinstance(engine, TrinoEngine)
    assert (engine.host, engine.port, engine.user, engine.catalog, engine.schema_) == (
        "trino.data.svc",
        8443,
        "quantos-prod",
        "lake",
        "research",
    )
