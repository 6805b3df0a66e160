"""Issue 16, defect 12: an accepted submission never waits on a gateway that is gone.

Real `quantos gateway` processes and a real `dagster dev`. A gateway pointed at a Dagster URL
where nothing listens accepts a submission, claims it and retries its launch; it is then
killed (SIGKILL of its process group: no shutdown hook runs) and another gateway starts on
the same store. Before leases the new gateway took the claim for the old one's for 120 s
after the old one's last renewal, and `POST retry` answered 409 "has no run yet"; the
submission stayed ACCEPTED with no error until a second restart. Now the claim lapses one
lease (QUANTOS_LAUNCH_LEASE_SECONDS, 15 s shipped, 8 s here) after the last heartbeat and the
running gateway takes it over at its next sweep; the store is never edited by hand here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dev_server import free_port, gateway_process, tail
from gateway_stack import Stack

pytestmark = pytest.mark.e2e

# QUANTOS_LAUNCH_LEASE_SECONDS of this module's gateways: shorter than the shipped 15 s so the
# takeover is quick to wait for, long enough that a busy machine never starves a heartbeat.
LEASE = 8.0
SWEEP = LEASE / 3
PIPELINE = "lq_quick"
STARTUP_WARNING = "does not answer"


@pytest.fixture(scope="module")
def stack(security_stack: Stack) -> Stack:
    """The suite's shared stack (tests/security_stack.py): its Dagster, for this module's own
    gateways."""
    return security_stack


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen
    log: Path
    token: str

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def status(self, sid: str) -> dict[str, Any]:
        res = self.call("GET", f"/api/orch/status/{sid}")
        assert res.status_code == 200, res.text
        return dict(res.json())

    def until(self, sid: str, what: str, ok: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(sid)
            if ok(body):
                return body
            if time.monotonic() > deadline:
                pytest.fail(f"{sid}: not {what} after {timeout} s: {body}\n{tail(self.log)}")
            time.sleep(0.25)

    def kill(self) -> None:
        """As the OOM killer or a node loss would: nothing of the gateway runs after this."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def startup_warnings(self) -> list[str]:
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if STARTUP_WARNING in line
        ]


@contextmanager
def gateway(stack: Stack, name: str, store: str, *args: str) -> Iterator[Gateway]:
    """A `quantos gateway` of its own on the store file `store` (under the stack's root)."""
    env = {
        **stack.env,
        "QUANTOS_GATEWAY_DB": f"sqlite:///{stack.root / store}",
        "QUANTOS_LAUNCH_LEASE_SECONDS": str(int(LEASE)),
    }
    with gateway_process(env, stack.root, *args, name=f"gateway-{name}") as (url, proc, log):
        yield Gateway(url, proc, log, stack.tokens["research"])


def _submit(gw: Gateway, sid: str) -> None:
    res = gw.call(
        "POST",
        "/api/orch/submit",
        json={"spec_ref": PIPELINE, "runtime_params": {"submission_id": sid}},
    )
    assert res.status_code == 202, res.text
    assert res.json()["run_id"] is None and res.json()["state"] in ("queued", "launching")


def _dagster_runs(stack: Stack, sid: str) -> list[dict[str, Any]]:
    data = stack.dagster.graphql(
        "query($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { results { "
        "runId status } } } }",
        {"t": [{"key": "quantos/submission_id", "value": sid}]},
    )
    return list(data["runsOrError"]["results"])


def test_a_submission_waiting_for_dagster_says_why_and_can_be_retried_and_canceled(
    stack: Stack,
) -> None:
    dead = free_port()
    with gateway(
        stack, "wrong-url", "waiting.db", "--dagster-url", f"http://quantos:s3cret@127.0.0.1:{dead}"
    ) as gw:
        # One line at start-up names the URL, without its credentials, and says what happens.
        warnings = gw.startup_warnings()
        assert len(warnings) == 1, tail(gw.log)
        assert f"Dagster at http://127.0.0.1:{dead} does not answer" in warnings[0]
        assert "submissions will be accepted and launched when it answers" in warnings[0]
        assert "s3cret" not in warnings[0] and "quantos:" not in warnings[0].split("warning:", 1)[1]

        _submit(gw, "lq-waiting")
        # The status says the launch is being retried, why, and when the next attempt is.
        first = gw.until("lq-waiting", "tried", lambda b: b["attempts"] >= 1, 30)
        assert first["status"] == "ACCEPTED" and first["run_id"] is None and first["error"] is None
        assert f"127.0.0.1:{dead} is unreachable" in first["last_error"], first
        # Logs answer 409 with that reason rather than a bare "has no run yet".
        logs = gw.call("GET", "/api/orch/logs/lq-waiting")
        assert logs.status_code == 409 and "launch attempts, the last:" in logs.json()["error"], (
            logs.text
        )

        # Once the backoff has grown, a retry makes it try now instead of at next_attempt_at.
        waiting = gw.until(
            "lq-waiting", "backed off", lambda b: (b["next_attempt_at"] or 0) - time.time() > 3, 30
        )
        retried = gw.call("POST", "/api/orch/retry/lq-waiting")
        assert retried.status_code == 200, retried.text
        assert retried.json() == {"submission_id": "lq-waiting", "run_id": None, "action": "retry"}
        tried = gw.until(
            "lq-waiting", "tried again", lambda b: b["attempts"] > waiting["attempts"], 2.5
        )
        assert tried["status"] == "ACCEPTED"

        # Canceled while its launch is being retried: it stops, and stays canceled.
        canceled = gw.call("POST", "/api/orch/cancel/lq-waiting")
        assert canceled.status_code == 200, canceled.text
        stopped = gw.until("lq-waiting", "canceled", lambda b: b["status"] == "CANCELED", 5)
        time.sleep(2 * SWEEP)
        assert gw.status("lq-waiting")["attempts"] == stopped["attempts"]
        assert gw.call("POST", "/api/orch/retry/lq-waiting").status_code == 409


def test_a_gateway_killed_while_holding_a_claim_is_taken_over_within_the_lease(
    stack: Stack,
) -> None:
    dead = free_port()
    with gateway(
        stack, "doomed", "handover.db", "--dagster-url", f"http://127.0.0.1:{dead}"
    ) as doomed:
        _submit(doomed, "lq-handover")
        _submit(doomed, "lq-dropped")
        for sid in ("lq-handover", "lq-dropped"):  # claimed by the doomed gateway, retrying
            doomed.until(sid, "claimed and tried", lambda b: b["attempts"] >= 1, 30)
        assert doomed.call("POST", "/api/orch/cancel/lq-dropped").status_code == 200
        doomed.kill()
        killed = time.monotonic()

    with gateway(stack, "next", "handover.db") as successor:
        assert successor.startup_warnings() == []  # its Dagster answers
        # While the dead gateway's lease runs out, the submission says what happened so far,
        # and a retry is accepted (it used to be 409 "has no run yet").
        waiting = successor.status("lq-handover")
        if waiting["run_id"] is None:
            assert waiting["status"] == "ACCEPTED" and "is unreachable" in waiting["last_error"], (
                waiting
            )
            retried = successor.call("POST", "/api/orch/retry/lq-handover")
            assert retried.status_code == 200, retried.text
        launched = successor.until(
            "lq-handover", "launched", lambda b: b["run_id"] is not None, LEASE + SWEEP + 30
        )
        took = time.monotonic() - killed
        # The lease was renewed at most a third of a lease before the kill; then one sweep,
        # plus the launch call itself on a loaded machine.
        assert took <= LEASE + SWEEP + 15, took
        done = successor.until(
            "lq-handover", "finished", lambda b: b["status"] in ("SUCCESS", "FAILURE"), 240
        )
        assert done["status"] == "SUCCESS", done
        assert [r["run_id"] for r in done["runs"]] == [launched["run_id"]]
        assert [r["runId"] for r in _dagster_runs(stack, "lq-handover")] == [
            launched["run_id"]
        ]  # launched once

        # The one canceled before the kill stays canceled: nothing launched it.
        time.sleep(SWEEP)
        assert successor.status("lq-dropped")["status"] == "CANCELED"
        assert _dagster_runs(stack, "lq-dropped") == []
