"""Run notifications as an operator receives them: real runs on a real instance, the sensor
evaluated by Dagster, messages delivered over HTTP to receivers on 127.0.0.1 (a generic
webhook, a Slack incoming webhook, and the Slack API that dagster-slack's client posts to)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from dagster import DagsterInstance, build_run_status_sensor_context, build_sensor_context
from loopback_http import QuietHandler, serve_http
from profiles import LOCAL

from definitions.assemble import definitions_for
from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec_text
from resources.notifier import NotifySettings
from resources.profile import active_profile
from sensors.run_notifications import build_run_notifications

pytestmark = pytest.mark.integration

SPEC = """\
version: 1
pipeline_id: {pid}
slo: {{retry: {{max_attempts: 2, backoff_sec: 0}}}}
nodes:
  - id: fetch
    kind: python_task
    params: {{entrypoint: "tests.integration.test_kinds_entrypoints:fail_first_attempt", marker: \
"{marker}"}}
    outs: [rows]
"""


@dataclass
class Receiver:
    url: str
    posts: list[tuple[str, bytes]] = field(default_factory=list)
    status: int = 200

    def texts(self) -> list[str]:
        out = []
        for path, body in self.posts:
            if path.endswith("chat.postMessage"):
                form = parse_qs(body.decode())
                out.append(form["text"][0] if form else json.loads(body)["text"])
            else:
                out.append(json.loads(body)["text"])
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback that records every POST."""
    rec = Receiver(url="")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.posts.append((self.path, body))
            reply = b'{"ok": true}' if self.path.endswith("chat.postMessage") else b"ok"
            self.send_response(rec.status)
            self.send_header(
                "Content-Type", "application/json" if reply.startswith(b"{") else "text/plain"
            )
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    with serve_http(Handler) as rec.url:
        yield rec


def _pipeline(pid: str, marker: Path, broken: bool = False):
    text = SPEC.format(pid=pid, marker=marker)
    if broken:  # a node that cannot run here: fails at once, no retry
        text = text.replace(
            'entrypoint: "tests.integration.test_kinds_entrypoints:fail_first_attempt", ', ""
        )
        text = text.replace("kind: python_task", "kind: python_task\n    image: ghcr.io/x/y:1")
    return build_pipeline(load_spec_text(text, f"{pid}.yaml", "yaml"), LOCAL)


def test_retry_failure_and_completion_arrive_in_seed_002_words(
    data_dir: Path, receiver: Receiver
) -> None:
    flaky, broken = (
        _pipeline("nightly_dataload", data_dir / "m1"),
        _pipeline("risk_model", data_dir / "m2", broken=True),
    )
    settings = NotifySettings(
        webhook_url=f"{receiver.url}/hook",
        slack_webhook_url=f"{receiver.url}/services/T000/B000/XXX",
        slack_token="xoxb-test",
        slack_channel="#orchestration",
        slack_api_url=f"{receiver.url}/api/",
        dagster_url="http://dagster.example:3000",
    )
    step_sensor, failure_sensor = build_run_notifications([flaky, broken], settings)
    defs = definitions_for([flaky, broken], active_profile())
    with DagsterInstance.get() as instance:
        first = step_sensor.evaluate_tick(build_sensor_context(instance=instance))
        ok = defs.resolve_job_def("nightly_dataload").execute_in_process(
            instance=instance, raise_on_error=False
        )
        bad = defs.resolve_job_def("risk_model").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert ok.success and not bad.success

        tick = step_sensor.evaluate_tick(
            build_sensor_context(instance=instance, cursor=first.cursor)
        )
        assert tick.skip_message == "3 notification(s) sent"
        generic = [json.loads(b) for p, b in receiver.posts if p == "/hook"]
        assert [g["text"] for g in generic] == [
            "nightly_dataload.fetch has retried (1/2 attempts).",
            "nightly_dataload.fetch is complete.",
            "risk_model.fetch has failed!",
        ]
        assert generic[0]["run_url"] == f"http://dagster.example:3000/runs/{ok.run_id}"
        assert generic[0]["attempt"] == 1 and generic[0]["max_attempts"] == 2
        assert generic[2]["run_id"] == bad.run_id
        slack_webhook = [
            t
            for (p, _), t in zip(receiver.posts, receiver.texts(), strict=False)
            if p.startswith("/services/")
        ]
        slack_api = [
            t
            for (p, _), t in zip(receiver.posts, receiver.texts(), strict=False)
            if p.endswith("chat.postMessage")
        ]
        assert slack_webhook == slack_api
        assert slack_webhook[1] == (
            "nightly_dataload.fetch is complete. "
            f"<http://dagster.example:3000/runs/{ok.run_id}|View run>"
        )

        # Nothing new: nothing resent.
        again = step_sensor.evaluate_tick(
            build_sensor_context(instance=instance, cursor=tick.cursor)
        )
        assert again.skip_message == "0 notification(s) sent" and len(receiver.posts) == 9

        # The failed run had a failed node, already announced: the run-level sensor stays quiet.
        failure_sensor(
            build_run_status_sensor_context(
                sensor_name="quantos_run_failure_notifications",
                dagster_instance=instance,
                dagster_event=bad.get_run_failure_event(),
                dagster_run=bad.dagster_run,
            ).for_run_failure()
        )
        assert len(receiver.posts) == 9


def test_an_unreachable_target_is_retried_next_tick(data_dir: Path, receiver: Receiver) -> None:
    flaky = _pipeline("nightly_dataload", data_dir / "m1")
    step_sensor, _ = build_run_notifications(
        [flaky], NotifySettings(webhook_url=f"{receiver.url}/hook")
    )
    defs = definitions_for([flaky], active_profile())
    with DagsterInstance.get() as instance:
        start = step_sensor.evaluate_tick(build_sensor_context(instance=instance)).cursor
        defs.resolve_job_def("nightly_dataload").execute_in_process(instance=instance)
        receiver.status = 503
        down = step_sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=start))
        assert down.skip_message is not None
        assert "notification not delivered, will resend" in down.skip_message
        assert "HTTP Error 503" in down.skip_message
        receiver.status = 200
        up = step_sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=down.cursor))
        assert up.skip_message == "2 notification(s) sent"  # the retry line was not lost
        texts = [json.loads(b)["text"] for _, b in receiver.posts[-2:]]
        assert texts == [
            "nightly_dataload.fetch has retried (1/2 attempts).",
            "nightly_dataload.fetch is complete.",
        ]


def test_no_target_configured_means_no_notification_sensors(data_dir: Path) -> None:
    assert build_run_notifications([_pipeline("p", data_dir / "m")], NotifySettings()) == []
