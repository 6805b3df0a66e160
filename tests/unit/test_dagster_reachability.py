"""`quantos gateway --dagster-url`: a bad URL is one line, and the start-up check of Dagster
names the URL it tried without the credentials the URL carries."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from quantos_assets.apps.gateway.dagster_reachability import (
    DagsterURLError,
    check_dagster_url,
    public_url,
    startup_warning,
)

REPO = Path(__file__).resolve().parents[2]


class _ServerInfo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == "/server_info"
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(b'{"dagster_webserver_version": "x"}' if found else b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def webserver() -> Iterator[str]:
    """A loopback HTTP server answering /server_info as Dagster's webserver does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ServerInfo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_start_up_check_warns_in_one_line_without_credentials(webserver: str) -> None:
    assert startup_warning(webserver) is None
    port = _dead_port()
    line = startup_warning(f"http://ops:hunter2@127.0.0.1:{port}")
    assert line is not None and "\n" not in line
    assert line.startswith(f"Dagster at http://127.0.0.1:{port} does not answer (ConnectError)")
    assert "submissions will be accepted and launched when it answers" in line
    assert "hunter2" not in line and "ops" not in line
    prefixed = startup_warning(f"{webserver}/dagster")  # a path prefix the webserver does not serve
    assert prefixed is not None and "HTTP 404 from /server_info" in prefixed


def test_a_url_that_is_not_http_is_refused_naming_its_source() -> None:
    assert public_url("https://u:p@dagster.internal:3000/x") == "https://dagster.internal:3000/x"
    with pytest.raises(
        DagsterURLError,
        match=r"^--dagster-url: expected http\(s\)://HOST\[:PORT\], got 'localhost:3000'$",
    ):
        check_dagster_url("localhost:3000", "--dagster-url")
    with pytest.raises(DagsterURLError) as err:
        check_dagster_url("ftp://u:secret@host", "QUANTOS_DAGSTER_URL")
    assert "secret" not in str(err.value)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantos_assets.apps.cli.main",
            "gateway",
            "--dagster-url",
            "ftp://u:secret@host",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2
    assert (
        res.stderr.strip()
        == "quantos: error: DagsterURLError: --dagster-url: expected http(s)://HOST[:PORT], got 'ftp://host'"
    )
