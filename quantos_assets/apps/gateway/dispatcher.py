"""Launches accepted submissions in Dagster, from the submission store's queue.

The submit endpoint answers 202 once a submission is validated, authorized, within quota
and committed to the store; launching it (a launchRun mutation, plus a code-location
reload for a new spec version) happens here, on a few threads. So a burst from the
compiler is accepted at the rate the store commits, not at the rate one webserver
creates runs, and a webserver that is briefly down delays launches instead of refusing
submissions.

Nothing accepted waits on a gateway that is gone: each claim is a lease (see
submission_store.py) that a heartbeat thread of the holding process renews every third of
a lease while a launch thread works on it, waits included. The same thread sweeps the store
for queued submissions nobody took and for claims whose lease lapsed (their gateway died),
so the running gateways take those over within a lease plus a sweep, not at their next
start. A claim taken over, or a submission tried before, is first looked up in Dagster by
its tags, so nothing launches twice.

A launch that Dagster refuses for a reason that will not go away (the job is not in the
code location, the spec changed since acceptance) marks the submission `failed` with the
reason, which its status shows; one that fails because Dagster is unreachable is retried
with backoff for `give_up_after` seconds, each attempt's error and the next attempt's time
recorded for the status. A retry request makes a waiting submission try at once.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quantos_assets.apps.client.graphql import DagsterAPIError
from quantos_assets.apps.client.submissions import (
    QuantosClient,
    SubmissionError,
    parse_params,
    parse_spec,
    spec_digest,
)
from quantos_assets.apps.gateway.registry_audit import audit_registration
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import RuntimeParams
from quantos_assets.stores.submission_store import CANCELED, Claim, SubmissionRow, SubmissionStore
from resources.audit_log import AuditLog
from resources.run_tag_keys import TAG_SPEC_SHA256, TAG_SUBMISSION, TAG_TEAM, TAG_TRACEPARENT

log = logging.getLogger("quantos.gateway.dispatcher")

MAX_DELAY = 15.0  # between launch attempts while Dagster is unreachable


def process_owner() -> str:
    """This gateway process's name on its claims: host, pid and a nonce (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class _Held:
    """A claim a launch thread of this process works on."""

    wake: threading.Event = field(default_factory=threading.Event)
    next_at: float | None = None  # wall time of the next attempt while waiting
    in_call: bool = False  # a launch call is in flight: never release it early
    lost: bool = False  # canceled, launched or taken over: stop


@dataclass
class LaunchDispatcher:
    store: SubmissionStore
    client: QuantosClient
    audit: AuditLog
    registered: Callable[[str], LoadedSpec | None]  # pipeline_id -> the registry's spec
    on_launched: Callable[[str], None] = lambda team: None  # team -> (active-run count)
    threads: int = 4
    give_up_after: float = 600.0
    lease: float = 15.0  # seconds a claim lasts unless the heartbeat renews it
    owner: str = field(default_factory=process_owner)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue, init=False)
    _queued: set[str] = field(default_factory=set, init=False)  # ids in _queue
    _held: dict[str, _Held] = field(default_factory=dict, init=False)
    _started: bool = field(default=False, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def tend_interval(self) -> float:
        """Between heartbeats and sweeps: a third of a lease, so two heartbeats may fail
        before the lease lapses, and a lapsed claim is found within a third of a lease."""
        return self.lease / 3

    def start(self) -> None:
        """Start the launch threads and the lease thread, and queue what previous gateways
        left unlaunched."""
        with self._lock:
            if self._started:
                return
            self._started = True
            for i in range(self.threads):
                threading.Thread(target=self._work, name=f"launch-{i}", daemon=True).start()
            threading.Thread(target=self._tend, name="launch-lease", daemon=True).start()
        for submission_id in self.store.pending():
            self.enqueue(submission_id)

    def stop(self) -> None:
        """The gateway is shutting down: launch nothing more, and let the claims not in a
        launch call lapse now so a running gateway takes them over at its next sweep."""
        with self._lock:
            self._stopping.set()
            idle = [sid for sid, held in self._held.items() if not held.in_call]
            for held in self._held.values():
                held.wake.set()
        try:
            self.store.release(self.owner, idle)
        except Exception:  # the store is down: the leases lapse by themselves
            log.exception("releasing claims at shutdown")

    def enqueue(self, submission_id: str) -> None:
        self.start()
        with self._lock:
            if submission_id in self._queued or submission_id in self._held:
                return
            self._queued.add(submission_id)
        self._queue.put(submission_id)

    def wake(self, submission_id: str) -> None:
        """A retry request: if this process waits to launch it, try now."""
        with self._lock:
            held = self._held.get(submission_id)
        if held is not None:
            held.wake.set()

    def backlog(self) -> int:
        return self._queue.qsize()

    # -- the lease thread -----------------------------------------------------------------------

    def _tend(self) -> None:
        while not self._stopping.wait(self.tend_interval):
            try:
                self._heartbeat()
            except Exception:  # a store hiccup: the next beat comes before the lease lapses
                log.exception("renewing launch claims")
            try:
                for submission_id in self.store.pending(queued_for=self.lease):
                    self.enqueue(submission_id)
            except Exception:
                log.exception("sweeping the launch queue")

    def _heartbeat(self) -> None:
        with self._lock:
            ids = list(self._held)
        if not ids:
            return
        still = self.store.heartbeat(self.owner, ids, self.lease)
        with self._lock:
            for submission_id in ids:
                held = self._held.get(submission_id)
                if held is None:
                    continue
                if submission_id not in still:
                    held.lost = True
                    held.wake.set()
                else:
                    due = still[submission_id]
                    if due is not None and held.next_at is not None and due < held.next_at:
                        held.wake.set()  # a retry request moved the next attempt earlier

    # -- the launch threads --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            submission_id = self._queue.get()
            with self._lock:
                self._queued.discard(submission_id)
            try:
                if self._stopping.is_set():
                    continue
                claim = self.store.claim(submission_id, self.owner, self.lease)
                if claim is not None:
                    self._hold_while(claim)
            except Exception:  # one submission must never stop the launcher
                log.exception("launching submission %s", submission_id)
            finally:
                self._queue.task_done()

    def _hold_while(self, claim: Claim) -> None:
        """Launch with the claim in `_held` (the heartbeat renews what is there)."""
        held = _Held()
        with self._lock:
            self._held[claim.row.id] = held
        try:
            self._launch(claim.row, claim.taken_over, held)
        finally:
            with self._lock:
                self._held.pop(claim.row.id, None)

    def _begin_call(self, row: SubmissionRow, held: _Held, just_claimed: bool) -> bool:
        """Before each launch call: still ours, and this gateway not stopping? Right after
        the claim the store is not asked again (one transaction less per launch): a cancel
        in between ends in `_record`, which terminates the run."""
        with self._lock:
            if self._stopping.is_set() or held.lost:
                return False
            held.in_call = True
            held.next_at = None
            held.wake.clear()
        if just_claimed or self.store.hold(row.id, self.owner, self.lease):
            return True
        held.in_call = False
        return False

    def _launch(self, row: SubmissionRow, taken_over: bool, held: _Held) -> None:
        try:
            loaded, params, request = self._rebuild(row)
        except (SubmissionError, SpecError, ValueError) as err:
            self._failed(row, str(err), attempted=False)
            return
        # Another gateway held it, or an earlier attempt's call may have reached Dagster.
        look_first = taken_over or row.attempts > 0
        deadline = time.monotonic() + self.give_up_after
        delay = 0.5
        just_claimed = True
        while True:
            if not self._begin_call(row, held, just_claimed):
                log.info("submission %s: no longer this gateway's to launch", row.id)
                return
            just_claimed = False
            try:
                if look_first:
                    existing = self._existing_run(row)
                    if existing is not None:
                        self._record(row, existing, adopted=True)
                        return
                launched = self.client.launch(
                    loaded,
                    params,
                    request.get("nodes"),
                    request.get("partition"),
                    team=row.team,
                    admin=request.get("admin") is True,
                    extra_tags={TAG_SPEC_SHA256: row.spec_sha256, **_trace_tags(request)},
                )
            except SubmissionError as err:
                self._failed(row, str(err), attempted=True)
                return
            except DagsterAPIError as err:
                if not err.retryable or time.monotonic() > deadline:
                    self._failed(row, str(err), attempted=True)
                    return
                # a launch that timed out may still have created its run: never launch twice
                look_first = True
                next_at = time.time() + delay
                held.in_call = False
                self.store.record_attempt(row.id, self.owner, str(err), next_at)
                held.next_at = next_at  # after the store has it: the heartbeat compares the two
                log.warning(
                    "submission %s: Dagster unavailable (%s); retrying in %.1f s",
                    row.id,
                    err,
                    delay,
                )
                held.wake.wait(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            finally:
                held.in_call = False
            break
        if launched.registration is not None:
            audit_registration(
                self.audit,
                row.actor,
                row.team,
                launched.registration,
                row.pipeline_id,
                row.spec_sha256,
            )
        self._record(row, launched.run_id)

    def _record(self, row: SubmissionRow, run_id: str, adopted: bool = False) -> None:
        """The run exists: record it, or terminate it if the submission was canceled meanwhile."""
        if self.store.launched(row.id, run_id) == CANCELED:
            try:
                self.client.api.terminate(run_id)
                detail = f"run {run_id} terminated: the submission was canceled during its launch"
            except DagsterAPIError as err:
                detail = f"run {run_id} of a canceled submission could not be terminated: {err}"
            log.warning("submission %s: %s", row.id, detail)
            self._audit_launch(row, "rejected", detail)
            return
        self.on_launched(row.team)
        adopted_note = " (launched by a gateway that stopped)" if adopted else ""
        self._audit_launch(row, "accepted", f"run {run_id}{adopted_note}")

    def _rebuild(self, row: SubmissionRow) -> tuple[LoadedSpec, RuntimeParams, dict[str, Any]]:
        """The spec and params exactly as accepted (the spec's hash must still match)."""
        request = json.loads(row.request or "{}")
        if request.get("dag_spec") is not None:
            loaded = parse_spec(request["dag_spec"])
        else:
            found = self.registered(str(request.get("spec_ref") or row.pipeline_id))
            if found is None:
                raise SubmissionError(
                    f"pipeline {row.pipeline_id!r} left the registry before its launch"
                )
            loaded = found
        if spec_digest(loaded.spec) != row.spec_sha256:
            raise SubmissionError(
                f"pipeline {row.pipeline_id!r} changed in the registry between acceptance and "
                "launch; submit again"
            )
        return (
            loaded,
            parse_params(request.get("runtime_params") or {"submission_id": row.id}),
            request,
        )

    def _existing_run(self, row: SubmissionRow) -> str | None:
        """The run an earlier holder or attempt created, if any: the gateway tags each run
        with the submission, its team and its spec hash. Raises DagsterAPIError when
        Dagster cannot say (then nothing is launched: the attempt is retried)."""
        found = self.client.api.runs_with_tags(
            {TAG_SUBMISSION: row.id, TAG_TEAM: row.team, TAG_SPEC_SHA256: row.spec_sha256}, limit=1
        )
        return str(found[0]["runId"]) if found else None

    def _audit_launch(self, row: SubmissionRow, decision: str, detail: str) -> None:
        """The launch's outcome in the audit trail, on the submission it served."""
        self.audit.append(
            actor=row.actor,
            team=row.team,
            action="launch",
            subject=row.id,
            spec_sha256=row.spec_sha256,
            decision=decision,
            detail=detail,
        )

    def _failed(self, row: SubmissionRow, reason: str, attempted: bool) -> None:
        if not self.store.fail(row.id, reason, owner=self.owner, attempted=attempted):
            return  # canceled or taken over meanwhile: theirs to report
        self._audit_launch(row, "rejected", reason)


def _trace_tags(request: dict[str, Any]) -> dict[str, str]:
    """The submission span's context, for the run's span to hang under (traces.py)."""
    traceparent = request.get("traceparent")
    return {TAG_TRACEPARENT: traceparent} if isinstance(traceparent, str) and traceparent else {}
