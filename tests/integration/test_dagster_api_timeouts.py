"""A slow webserver as the gateway meets it: a code-location reload may take minutes under
load and gets its own timeout; whatever times out is named in the one-line error.

Dagster's webserver is stood in for by an HTTP server on loopback that answers GraphQL
documents after a delay (a real reload cannot be made slow on demand)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from loopback_http import QuietHandler, serve_http

from quantos_assets.apps.client.graphql import DagsterAPI, DagsterAPIError

pytestmark = pytest.mark.integration

DELAY = 1.5
RELOADED = {
    "reloadRepositoryLocation": {
        "__typename": "WorkspaceLocationEntry",
        "locationOrLoadError": {"__typename": "RepositoryLocation"},
    }
}
FOUND = {"pipelineOrError": {"__typename": "Pipeline", "name": "p"}}


class _SlowDagster(QuietHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(DELAY)
        data = RELOADED if "reloadRepositoryLocation" in body["query"] else FOUND
        payload = json.dumps({"data": data}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up first


@pytest.fixture
def slow_dagster() -> Iterator[str]:
    with serve_http(_SlowDagster) as url:
        yield url


def test_a_reload_gets_longer_than_other_calls() -> None:
    api = DagsterAPI("http://127.0.0.1:9")
    assert api.reload_timeout >= 5 * api.timeout  # 300 s against 60 s


def test_a_slow_reload_completes_within_its_own_timeout(slow_dagster: str) -> None:
    api = DagsterAPI(slow_dagster, timeout=0.5, reload_timeout=10)
    api.reload_location()  # 1.5 s: longer than the calls' 0.5 s, well within the reload's
    with pytest.raises(DagsterAPIError) as err:
        api.has_job("p")
    assert (
        str(err.value)
        == f"Dagster at {slow_dagster} did not answer the GraphQL query QuantosPipeline within "
        "0.5 s (ReadTimeout)"
    )
    assert err.value.status == 504 and err.value.retryable


def test_a_timed_out_reload_says_it_was_the_reload(slow_dagster: str) -> None:
    api = DagsterAPI(slow_dagster, timeout=0.5, reload_timeout=0.5)
    with pytest.raises(DagsterAPIError) as err:
        api.reload_location()
    assert str(err.value) == (
        f"Dagster at {slow_dagster} did not answer the reload of code location 'quantos' within "
        "0.5 s (ReadTimeout)"
    )
    assert "unreachable" not in str(err.value) and err.value.status == 504


def test_nothing_listening_is_still_unreachable() -> None:
    with pytest.raises(DagsterAPIError) as err:
        DagsterAPI("http://127.0.0.1:9", timeout=2).reload_location()
    assert (
        str(err.value).startswith("Dagster at http://127.0.0.1:9 is unreachable: ConnectError")
        and err.value.status == 503
    )
