"""The HTTP transport as Marquez receives it: events POSTed to a real HTTP server on loopback
(`/api/v1/lineage`, JSON, bearer API key), configured only through the environment; a
server that answers 503 delays events and loses none."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context
from loopback_http import QuietHandler, serve_http
from profiles import LOCAL

from definitions.assemble import definitions_for
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec_text
from resources.profile import active_profile
from sensors.openlineage import build_lineage_sensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openlineage_schema import validate_event

pytestmark = pytest.mark.integration

SPEC = """\
version: 1
pipeline_id: http_lineage
labels: {team: rates}
nodes:
  - id: one
    kind: trino_sql
    params: {sql: "SELECT 1 AS x"}
    outs: [one]
  - id: two
    kind: trino_sql
    params: {sql: "SELECT x + 1 AS y FROM one"}
    ins: [one]
    outs: [two]
"""


@dataclass
class Marquez:
    """Records each POST like Marquez's lineage endpoint; `status` is what it answers."""

    url: str = ""
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    status: int = 201


@pytest.fixture
def marquez() -> Iterator[Marquez]:
    rec = Marquez()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if rec.status < 300:
                rec.posts.append((self.path, dict(self.headers), body))
            self.send_response(rec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serve_http(Handler) as rec.url:
        yield rec


def test_events_are_posted_to_marquez_and_resent_after_an_outage(
    data_dir: Path, marquez: Marquez, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", marquez.url)
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "s3cr3t")
    monkeypatch.setenv("QUANTOS_LINEAGE_TIMEOUT", "2")
    profile = active_profile()
    assert profile.lineage.transport == "http"
    pipeline = build_pipeline(load_spec_text(SPEC, "http_lineage.yaml", "yaml"), LOCAL)
    lineage = build_lineage_sensor([pipeline], profile)
    assert lineage is not None
    defs = definitions_for([pipeline], profile)

    with DagsterInstance.get() as instance:
        start = lineage.evaluate_tick(build_sensor_context(instance=instance)).cursor
        assert defs.resolve_job_def("http_lineage").execute_in_process(instance=instance).success

        marquez.status = 503  # down: nothing accepted, the tick says so and keeps its place
        down = lineage.evaluate_tick(build_sensor_context(instance=instance, cursor=start))
        assert down.skip_message is not None
        assert down.skip_message.startswith(
            f"OpenLineage event not delivered to {marquez.url}/api/v1/lineage: "
        )
        assert down.skip_message.endswith("; will resend")
        assert marquez.posts == []

        marquez.status = 201
        up = lineage.evaluate_tick(build_sensor_context(instance=instance, cursor=down.cursor))
        assert up.skip_message == "6 OpenLineage event(s) sent"  # run START/COMPLETE + 2 nodes x 2

    events = []
    for path, headers, body in marquez.posts:
        assert path == "/api/v1/lineage"
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer s3cr3t"
        events.append(json.loads(body))
    for event in events:
        validate_event(event)
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("http_lineage", "START"),
        ("http_lineage.one", "START"),
        ("http_lineage.one", "COMPLETE"),
        ("http_lineage.two", "START"),
        ("http_lineage.two", "COMPLETE"),
        ("http_lineage", "COMPLETE"),
    ]
    assert {e["job"]["namespace"] for e in events} == {"rates"}
    one, two = events[2], events[4]
    assert two["inputs"][0]["facets"]["version"] == one["outputs"][0]["facets"]["version"]
