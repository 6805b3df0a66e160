"""Launches accepted submissions in Dagster, from the submission store's queue.

The submit endpoint answers 202 once a submission is validated, authorized, within quota
and committed to the store; launching it (a launchRun mutation, plus a code-location
reload for a new spec version) happens here, on a few threads. So a burst from the
compiler is accepted at the rate the store commits, not at the rate one webserver
creates runs, and a webserver that is briefly down delays launches instead of refusing
submissions. Nothing accepted is lost: the queue is the store (see submission_store.py),
recovered when the gateway starts.

A launch that Dagster refuses for a reason that will not go away (the job is not in the
code location, the spec changed since acceptance) marks the submission `failed` with the
reason, which its status shows; one that fails because Dagster is unreachable is retried
with backoff for `give_up_after` seconds.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quantos_assets.client.graphql import DagsterAPIError
from quantos_assets.client.submissions import (
    QuantosClient,
    SubmissionError,
    parse_params,
    parse_spec,
    spec_digest,
)
from quantos_assets.gateway.registry_audit import audit_registration
from quantos_assets.gateway.submission_store import SubmissionRow, SubmissionStore
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import RuntimeParams
from resources.audit_log import AuditLog

log = logging.getLogger("quantos.gateway.dispatcher")


@dataclass
class LaunchDispatcher:
    store: SubmissionStore
    client: QuantosClient
    audit: AuditLog
    registered: Callable[[str], LoadedSpec | None]  # pipeline_id -> the registry's spec
    on_launched: Callable[[str], None] = lambda team: None  # team -> (active-run count)
    threads: int = 4
    give_up_after: float = 600.0
    _queue: queue.Queue[str] = field(default_factory=queue.Queue, init=False)
    _started: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def start(self) -> None:
        """Start the launch threads and re-queue what a previous gateway left unlaunched."""
        with self._lock:
            if self._started:
                return
            self._started = True
            for i in range(self.threads):
                threading.Thread(target=self._work, name=f"launch-{i}", daemon=True).start()
        for submission_id in self.store.pending():
            self._queue.put(submission_id)

    def enqueue(self, submission_id: str) -> None:
        self.start()
        self._queue.put(submission_id)

    def backlog(self) -> int:
        return self._queue.qsize()

    # -- the launch threads --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            submission_id = self._queue.get()
            try:
                claimed = self.store.claim(submission_id)
                if claimed is not None:
                    self._launch(*claimed)
            except Exception:  # one submission must never stop the launcher
                log.exception("launching submission %s", submission_id)
            finally:
                self._queue.task_done()

    def _launch(self, row: SubmissionRow, taken_over: bool) -> None:
        try:
            loaded, params, request = self._rebuild(row)
        except (SubmissionError, SpecError, ValueError) as err:
            self._failed(row, str(err))
            return
        if taken_over and self._already_running(row):
            return
        deadline = time.monotonic() + self.give_up_after
        delay = 0.5
        while True:
            try:
                launched = self.client.launch(
                    loaded, params, request.get("nodes"), request.get("partition"), team=row.team,
                    admin=request.get("admin") is True, extra_tags={"quantos/spec_sha256": row.spec_sha256},
                )
            except SubmissionError as err:
                self._failed(row, str(err))
                return
            except DagsterAPIError as err:
                if not err.retryable or time.monotonic() > deadline:
                    self._failed(row, str(err))
                    return
                log.warning("submission %s: Dagster unavailable (%s); retrying in %.1f s", row.id, err, delay)
                self.store.renew(row.id)
                time.sleep(delay)
                delay = min(delay * 2, 15.0)
                # a launch that timed out may still have created its run: never launch twice
                if self._already_running(row):
                    return
                continue
            break
        if launched.registration is not None:
            audit_registration(self.audit, row.actor, row.team, launched.registration, row.pipeline_id, row.spec_sha256)
        self.store.set_run(row.id, launched.run_id, attempt=1)
        self.on_launched(row.team)
        self.audit.append(
            actor=row.actor, team=row.team, action="launch", subject=row.id,
            spec_sha256=row.spec_sha256, decision="accepted", detail=f"run {launched.run_id}",
        )

    def _rebuild(self, row: SubmissionRow) -> tuple[LoadedSpec, RuntimeParams, dict[str, Any]]:
        """The spec and params exactly as accepted (the spec's hash must still match)."""
        request = json.loads(row.request or "{}")
        if request.get("dag_spec") is not None:
            loaded = parse_spec(request["dag_spec"])
        else:
            found = self.registered(str(request.get("spec_ref") or row.pipeline_id))
            if found is None:
                raise SubmissionError(f"pipeline {row.pipeline_id!r} left the registry before its launch")
            loaded = found
        if spec_digest(loaded.spec) != row.spec_sha256:
            raise SubmissionError(
                f"pipeline {row.pipeline_id!r} changed in the registry between acceptance and launch; submit again"
            )
        return loaded, parse_params(request.get("runtime_params") or {"submission_id": row.id}), request

    def _already_running(self, row: SubmissionRow) -> bool:
        """A claim taken over from a stopped gateway: it may have launched before stopping."""
        try:
            runs = self.client.runs(row.id, row.team)
        except (SubmissionError, DagsterAPIError):
            return False
        self.store.set_run(row.id, runs[0]["runId"], attempt=1)
        return True

    def _failed(self, row: SubmissionRow, reason: str) -> None:
        self.store.fail(row.id, reason)
        self.audit.append(
            actor=row.actor, team=row.team, action="launch", subject=row.id,
            spec_sha256=row.spec_sha256, decision="rejected", detail=reason,
        )

