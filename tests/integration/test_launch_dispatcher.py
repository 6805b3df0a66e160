"""The launch dispatcher's lease on the real store (SQLite and PostgreSQL), against a Dagster
URL where nothing listens: a claim is held while the gateway retries, a retry request makes
it try at once, and a claim whose gateway is gone is taken over by a running one.

The launch itself, and the kill of a real gateway process, are in
tests/security/test_launch_queue.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postgres_db import PG_URL, fresh_database

from quantos_assets.apps.client.submissions import QuantosClient, parse_spec, spec_digest
from quantos_assets.apps.gateway.dispatcher import LaunchDispatcher
from quantos_assets.stores.submission_store import NewSubmission, SubmissionRow, SubmissionStore
from resources.audit_key import AuditKeySource
from resources.audit_settings import AuditSettings
from resources.profile import LOCAL_CLUSTER

SPEC = {
    "version": 1,
    "pipeline_id": "lease_probe",
    "labels": {"team": "research"},
    "nodes": [
        {
            "id": "t",
            "kind": "python_task",
            "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
            "outs": ["o"],
        }
    ],
}
LEASE = 1.5


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SubmissionStore]:
    if request.param == "sqlite":
        yield SubmissionStore.from_url(f"sqlite:///{tmp_path / 'gateway.db'}")
    else:
        with fresh_database("quantos_dispatch_test") as db:
            made = SubmissionStore.from_url(PG_URL.format(db=db))
            yield made
            made.engine.dispose()


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _dispatcher(store: SubmissionStore, tmp_path: Path) -> LaunchDispatcher:
    client = QuantosClient(_dead_url(), tmp_path / "specs", cluster=LOCAL_CLUSTER)
    trail = AuditSettings(
        str(store.engine.url),
        str(tmp_path / "audit.anchor"),
        AuditKeySource(path=tmp_path / "audit.key"),
    )
    audit = trail.writer(store.engine)
    return LaunchDispatcher(
        store=store, client=client, audit=audit, registered=lambda _p: None, lease=LEASE
    )


def _admit(store: SubmissionStore, sid: str) -> None:
    digest = spec_digest(parse_spec(SPEC).spec)
    request = {"dag_spec": SPEC, "runtime_params": {"submission_id": sid}}
    submission = NewSubmission(
        submission_id=sid,
        team="research",
        actor="tok",
        pipeline_id="lease_probe",
        spec_sha256=digest,
        params={},
        request=request,
    )
    assert store.admit(submission, per_minute=100).admitted


def _until(
    store: SubmissionStore, sid: str, ok: Callable[[SubmissionRow], bool], timeout: float
) -> SubmissionRow:
    deadline = time.monotonic() + timeout
    while True:
        row = store.get(sid)
        assert row is not None
        if ok(row):
            return row
        assert time.monotonic() < deadline, row
        time.sleep(0.05)


def _more_attempts_than(n: int) -> Callable[[SubmissionRow], bool]:
    return lambda row: row.attempts > n


def test_a_claim_is_held_while_retrying_and_a_retry_request_tries_at_once(
    store: SubmissionStore, tmp_path: Path
) -> None:
    gw = _dispatcher(store, tmp_path)
    try:
        _admit(store, "d1")
        gw.enqueue("d1")
        first = _until(store, "d1", lambda r: r.attempts >= 1, 10)
        assert first.state == "launching" and first.owner == gw.owner
        assert "is unreachable" in (first.last_error or "")

        # Three leases later: still this gateway's, its lease renewed, the attempts counted.
        time.sleep(3 * LEASE)
        later = store.get("d1")
        assert (
            later is not None and later.owner == gw.owner and (later.lease_until or 0) > time.time()
        )
        assert later.attempts > first.attempts and later.state == "launching"

        # A retry request served by another gateway process (only the store says so): the
        # holder notices at its next heartbeat, well before the planned attempt.
        for wake_locally in (False, True):
            waiting = _until(
                store, "d1", lambda r: (r.next_attempt_at or 0) - time.time() > 2.5, 20
            )
            assert store.launch_now("d1") == "launching"
            if wake_locally:
                gw.wake("d1")
            tried = _until(store, "d1", _more_attempts_than(waiting.attempts), 1.5)
            assert tried.owner == gw.owner
    finally:
        gw.stop()
    # Stopping lets the claim lapse at once (nothing was in a launch call at that moment
    # or, if something was, within a lease).
    _until(store, "d1", lambda r: (r.lease_until or 0) < time.time(), LEASE + 1)


def test_a_running_gateway_takes_over_the_claim_of_one_that_is_gone(
    store: SubmissionStore, tmp_path: Path
) -> None:
    _admit(store, "d2")
    # A gateway claimed it and died (no heartbeat, no release).
    assert store.claim("d2", "gone-gateway", LEASE) is not None
    claimed_at = time.time()
    gw = _dispatcher(store, tmp_path)
    try:
        gw.start()  # at start-up the claim has not lapsed yet: only the periodic sweep finds it
        taken = _until(store, "d2", lambda r: r.owner == gw.owner, LEASE + gw.tend_interval + 2)
        waited = time.time() - claimed_at
        assert LEASE <= waited <= LEASE + gw.tend_interval + 1.5, waited
        # Taken over, so it asked Dagster for an existing run first: unreachable, so it
        # launched nothing and counts the attempt.
        tried = _until(store, "d2", lambda r: r.attempts >= 1, 5)
        assert (
            tried.state == "launching"
            and "unreachable" in (tried.last_error or "")
            and taken.run_id is None
        )
    finally:
        gw.stop()
