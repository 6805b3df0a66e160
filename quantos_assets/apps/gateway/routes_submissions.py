"""Seed 000 §8: submissions - submit a spec, follow its run (status, logs, lineage), cancel,
retry, list.

A submission is accepted into the gateway's launch queue (submission_store.py) and launched
in Dagster by the dispatcher (dispatcher.py); until its run exists, its answers come from the
store, and from Dagster after that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query

from quantos_assets.admission.request import Action
from quantos_assets.apps.client.graphql import DagsterAPIError
from quantos_assets.apps.client.submissions import SubmissionError, parse_params, spec_digest
from quantos_assets.apps.gateway.auth import ApiError, Reader, Submitter, answer
from quantos_assets.apps.gateway.policy import (
    admission,
    owned,
    rejecter,
    resolve_params,
    resolve_spec,
    take_slot,
)
from quantos_assets.apps.gateway.schemas import ERRORS, ActionResult, SubmitAccepted, SubmitRequest
from quantos_assets.apps.gateway.tokens import Principal
from quantos_assets.apps.gateway.wiring import CurrentGateway, Gateway
from quantos_assets.observability.traces import submission_span
from quantos_assets.spec.errors import SpecError
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec, RuntimeParams
from quantos_assets.stores.submission_store import (
    CANCELED,
    FAILED,
    LAUNCHING,
    QUEUED,
    NewSubmission,
    SubmissionRow,
)
from resources.redaction import redact
from resources.sql_store import reading

router = APIRouter(prefix="/api/orch")

_Reject = Callable[..., ApiError]  # policy.rejecter: audit a refusal, return its answer


@router.post("/submit", status_code=202, response_model=SubmitAccepted, responses=ERRORS)
def submit(body: SubmitRequest, gw: CurrentGateway, who: Submitter) -> SubmitAccepted:
    """Accept a spec (inline `dag_spec`, or `spec_ref` to a registered pipeline_id) and its
    runtime params for launch.

    Everything that can be refused is checked before anything is stored: the spec and params
    (422, one line per problem), ownership and secrets scopes (403), `nodes` and `partition`
    (422), the team's active runs plus its not yet launched submissions (429), its
    submissions per minute (429) and the launch queue (503 when full). The answer is 202 as
    soon as the submission is committed to the gateway's store: `run_id` is null and `state`
    `queued` or `launching` until the launch dispatcher has created the Dagster run;
    `status_url` follows it. Re-sending the same `submission_id` with the same spec and
    params answers the same submission; with anything else, 409 `already used by another
    submission`; after that submission failed to launch or was canceled before its launch,
    409 saying so (POST retry relaunches a failed launch; a canceled one needs a new
    `submission_id`)."""
    loaded = resolve_spec(gw, body.dag_spec, body.spec_ref)
    params = resolve_params(body.runtime_params)
    # The trace's root; its context goes with the launch request to the run (traces.py).
    with submission_span(params.submission_id, loaded.spec.pipeline_id, who.team) as traceparent:
        return _submit(gw, who, body, loaded, params, traceparent)


def _submit(
    gw: Gateway,
    who: Principal,
    body: SubmitRequest,
    loaded: LoadedSpec,
    params: RuntimeParams,
    traceparent: str | None,
) -> SubmitAccepted:
    """The checks and the commit of a submit, once its spec and params parsed."""
    new = _new_submission(body, who, loaded.spec, params, traceparent)
    reject = rejecter(gw, who, "submit", new.submission_id, new.spec_sha256, new.params)
    try:  # what the launch itself would refuse, refused now: nothing stored
        gw.client.check(loaded.spec, body.nodes, body.partition, params)
    except SubmissionError as err:
        raise reject(err.status, str(err)) from None
    gw.usage.ask_dagster(who.team)
    with reading(gw.store.engine) as snapshot:  # one read transaction for the checks below
        resent = gw.store.get(new.submission_id, snapshot)
        if resent is not None:  # a re-send costs nothing: answered before the quotas
            return _resent(gw, resent, new, reject)
        usage = gw.usage.within(snapshot)
        admission(gw, who, Action.SUBMIT, loaded.spec, params, reject, usage)
    if gw.dispatcher.backlog() >= gw.settings.max_backlog:
        waiting = f"{gw.dispatcher.backlog()} submissions are waiting to launch; try again shortly"
        raise reject(503, waiting, {"Retry-After": "5"})
    return _queue(gw, new, reject)


@router.get("/status/{submission_id}", responses=ERRORS)
def status(submission_id: str, gw: CurrentGateway, who: Reader) -> dict[str, Any]:
    """The submission's state: `status` is Dagster's run status (QUEUED, STARTING, STARTED,
    SUCCESS, FAILURE, CANCELING, CANCELED) once the run exists, and before that ACCEPTED
    (waiting for the launch dispatcher), LAUNCH_FAILED (with `error`: why Dagster refused
    it; POST retry launches it again) or CANCELED. Also `run_id`, `partition`,
    `start_time`/`end_time`, `steps` (`node`, `status`, `start_time`, `end_time`,
    `attempts`) of the latest run, and `runs`: every run of the submission, newest first
    (a retry adds one).

    Before the run exists the body also says how its launch goes: `attempts` (launch
    calls that failed so far), `last_error` (why the last one failed, e.g. Dagster
    unreachable) and `next_attempt_at` (Unix time of the next attempt while a gateway
    retries it; null while an attempt is under way or none is planned). A submission
    whose gateway stopped is taken over by a running gateway within
    QUANTOS_LAUNCH_LEASE_SECONDS (default 15) plus a third of that."""
    row = _owned(gw, who, submission_id)
    if row.run_id is None:
        return _not_launched(row)
    return answer(lambda: gw.client.status(submission_id, row.team))


@router.get("/logs/{submission_id}", responses=ERRORS)
def logs(
    submission_id: str,
    gw: CurrentGateway,
    who: Reader,
    node: Annotated[str | None, Query(description="only this node's lines")] = None,
) -> dict[str, Any]:
    """The latest run's event log: `lines` of `time`, `level`, `node`, `event`, `message`,
    `submission_id`, `pipeline_id`, `run_id`; with `node`, that node's lines only. 409
    while the submission has no run yet."""
    row = _launched(_owned(gw, who, submission_id))
    lines = answer(lambda: gw.client.logs(submission_id, node, row.team))
    return {"submission_id": submission_id, "node": node, "lines": lines}


@router.get("/lineage/{submission_id}", responses=ERRORS)
def lineage(submission_id: str, gw: CurrentGateway, who: Reader) -> dict[str, Any]:
    """What the latest run produced and read: `assets` (each `key`, `partition`, Iceberg
    `table`/`snapshot_id`/`rows` or artifact `uri`/`sha256`, and its `upstream` and
    `downstream` asset keys) and `inputs` (each step's input with the snapshot or
    artifact it loaded). 409 while the submission has no run yet."""
    row = _launched(_owned(gw, who, submission_id))
    return answer(lambda: gw.client.lineage(submission_id, row.team))


@router.post("/cancel/{submission_id}", response_model=ActionResult, responses=ERRORS)
def cancel(submission_id: str, gw: CurrentGateway, who: Submitter) -> ActionResult:
    """Cancel: a submission not launched yet is dropped from the launch queue (`run_id`
    null), also while a gateway is retrying its launch (a run created by a launch call
    already in flight is terminated); otherwise its active run is terminated. 409 when
    there is nothing to cancel."""
    row = _owned(gw, who, submission_id)
    if row.run_id is None and gw.store.cancel_queued(submission_id):
        gw.audit.append(
            actor=who.token_id,
            team=who.team,
            action="cancel",
            subject=submission_id,
            spec_sha256=row.spec_sha256,
            decision="accepted",
            detail="canceled before launch",
        )
        # a launch thread of this gateway waiting on it stops now
        gw.dispatcher.wake(submission_id)
        return ActionResult(submission_id=submission_id, run_id=None, action="cancel")
    _launched(gw.store.get(submission_id) or row)
    run_id = _decided(
        gw,
        who,
        "cancel",
        submission_id,
        row.spec_sha256,
        lambda: gw.client.cancel(submission_id, row.team),
    )
    return ActionResult(submission_id=submission_id, run_id=run_id, action="cancel")


@router.post("/retry/{submission_id}", response_model=ActionResult, responses=ERRORS)
def retry(submission_id: str, gw: CurrentGateway, who: Submitter) -> ActionResult:
    """Retry: a submission that has no run yet is launched again (`run_id` null in the
    answer; status follows it): one whose launch failed is queued again, one still
    waiting (ACCEPTED: queued, retried against an unreachable Dagster, or held by a
    gateway that stopped) is tried now, or as soon as that gateway's claim lapses. A
    failed or canceled run is re-executed from failure, and the new run's id returned.
    409 for a run that is still active or succeeded, or a submission canceled before its
    launch."""
    row = _owned(gw, who, submission_id)
    _admit_rerun(gw, who, row)
    if row.run_id is None:
        before = gw.store.launch_now(submission_id)
        if before is not None:
            detail = "queued for launch again" if row.state == FAILED else "launch attempted now"
            gw.audit.append(
                actor=who.token_id,
                team=who.team,
                action="retry",
                subject=submission_id,
                spec_sha256=row.spec_sha256,
                decision="accepted",
                detail=detail,
            )
            gw.dispatcher.enqueue(submission_id)
            gw.dispatcher.wake(submission_id)
            return ActionResult(submission_id=submission_id, run_id=None, action="retry")
        row = gw.store.get(submission_id) or row  # launched or canceled meanwhile
    _launched(row)
    run_id = _decided(
        gw,
        who,
        "retry",
        submission_id,
        row.spec_sha256,
        lambda: gw.client.retry(submission_id, row.team),
    )
    gw.store.set_run(submission_id, run_id, attempt=len(gw.store.run_ids(submission_id)) + 1)
    return ActionResult(submission_id=submission_id, run_id=run_id, action="retry")


@router.get("/submissions", responses=ERRORS)
def submissions(
    gw: CurrentGateway, who: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """The team's submissions, newest first (every team's with an `admin` token): id, team,
    pipeline, `run_id`, `state` (queued, launching, launched, failed, canceled), the launch
    `error` if any, `attempts`, `last_error` and `next_attempt_at` of its launch (as in
    status), the spec hash and the time it was accepted."""
    team = None if "admin" in who.scopes else who.team
    return [_listed(r) for r in gw.store.list(team, limit)]


# -- helpers of the endpoints ---------------------------------------------------------------------


def _new_submission(
    body: SubmitRequest,
    who: Principal,
    spec: DagSpec,
    params: RuntimeParams,
    traceparent: str | None = None,
) -> NewSubmission:
    """What the store keeps of a submit: the params its audit record keeps (compared on a
    re-send) and the request the dispatcher launches (with the submission span's context)."""
    return NewSubmission(
        submission_id=params.submission_id,
        team=who.team,
        actor=who.token_id,
        pipeline_id=spec.pipeline_id,
        spec_sha256=spec_digest(spec),
        params={
            "runtime_params": params.model_dump(mode="json"),
            "refs": body.refs,
            "nodes": body.nodes,
            "partition": body.partition,
        },
        request={
            "dag_spec": body.dag_spec,
            "spec_ref": body.spec_ref,
            "nodes": body.nodes,
            "partition": body.partition,
            "runtime_params": params.model_dump(mode="json", exclude_none=True),
            # The launch registers the spec: an admin's may replace another team's pipeline.
            **({"admin": True} if "admin" in who.scopes else {}),
            **({"traceparent": traceparent} if traceparent else {}),
        },
    )


def _queue(gw: Gateway, new: NewSubmission, reject: _Reject) -> SubmitAccepted:
    """Store the submission and its audit record in one commit (if the team's per-minute
    window has room), then hand it to the launch dispatcher."""
    per_minute = gw.teams.policy(new.team).submissions_per_minute
    stored = gw.store.admit(
        new,
        per_minute=per_minute,
        audit=lambda conn: gw.audit.record(
            conn,
            actor=new.actor,
            team=new.team,
            action="submit",
            subject=new.submission_id,
            spec_sha256=new.spec_sha256,
            params=new.params,
            decision="accepted",
            detail="queued for launch",
        ),
    )
    if stored.existing is not None:  # sent twice at once: the other copy won
        return _resent(gw, stored.existing, new, reject)
    if stored.row is None or stored.audited is None:  # the window filled since the policy looked
        raise reject(
            429,
            f"team {new.team} reached {per_minute} submissions per minute",
            {"Retry-After": str(stored.retry_after)},
        )
    gw.audit.anchor_head(stored.audited)
    gw.dispatcher.enqueue(new.submission_id)
    return _accepted(gw, stored.row, new.pipeline_id)


def _accepted(gw: Gateway, row: SubmissionRow, pipeline_id: str) -> SubmitAccepted:
    return SubmitAccepted(
        submission_id=row.id,
        run_id=row.run_id,
        state=row.state,
        pipeline_id=pipeline_id,
        spec_sha256=row.spec_sha256,
        # Never from the request's Host header: the caller chooses it, and the answer (or a
        # cache, or a log) would send the next request wherever the caller wanted.
        status_url=f"{gw.settings.public_url}/api/orch/status/{row.id}",
    )


def _resent(
    gw: Gateway, existing: SubmissionRow, new: NewSubmission, reject: _Reject
) -> SubmitAccepted:
    """The same submission_id again: the same submission if the spec and params are the same."""
    same = (
        existing.team == new.team
        and existing.spec_sha256 == new.spec_sha256
        and json.loads(existing.params) == json.loads(json.dumps(new.params, sort_keys=True))
    )
    if not same:
        raise reject(409, f"submission_id {existing.id!r} is already used by another submission")
    if existing.state in (FAILED, CANCELED):
        raise reject(409, _ended_before_launch(existing))
    return _accepted(gw, existing, new.pipeline_id)


# What a submission's status is before Dagster has a run for it.
_UNLAUNCHED_STATUS = {
    QUEUED: "ACCEPTED",
    LAUNCHING: "ACCEPTED",
    FAILED: "LAUNCH_FAILED",
    CANCELED: "CANCELED",
}


def _not_launched(row: SubmissionRow) -> dict[str, Any]:
    return {
        "submission_id": row.id,
        "pipeline_id": row.pipeline_id,
        "status": _UNLAUNCHED_STATUS.get(row.state, "ACCEPTED"),
        "run_id": None,
        "runs": [],
        "steps": [],
        "error": row.error and redact(row.error),
        "attempts": row.attempts,
        "last_error": row.last_error and redact(row.last_error),
        "next_attempt_at": row.next_attempt_at,
    }


def _listed(row: SubmissionRow) -> dict[str, Any]:
    """One submission of the list."""
    return {
        "submission_id": row.id,
        "team": row.team,
        "pipeline_id": row.pipeline_id,
        "run_id": row.run_id,
        "state": row.state,
        "error": row.error and redact(row.error),
        "attempts": row.attempts,
        "last_error": row.last_error and redact(row.last_error),
        "next_attempt_at": row.next_attempt_at,
        "spec_sha256": row.spec_sha256,
        "created_at": row.created_at,
    }


def _ended_before_launch(row: SubmissionRow) -> str:
    """Why re-sending a submission that never got a run does not launch it again."""
    if row.state == FAILED:
        return (
            f"submission {row.id} failed to launch ({row.error or 'no reason recorded'}): "
            f"retry it with POST /api/orch/retry/{row.id} or use a new submission_id"
        )
    return f"submission {row.id} was canceled before its launch: use a new submission_id"


def _launched(row: SubmissionRow) -> SubmissionRow:
    if row.run_id is None:
        state = _UNLAUNCHED_STATUS.get(row.state, "ACCEPTED")
        if row.error:
            detail = f": {row.error}"
        elif row.last_error:
            detail = f", {row.attempts} launch attempts, the last: {row.last_error}"
        else:
            detail = ""
        raise ApiError(409, f"submission {row.id} has no run yet ({state}{detail})")
    return row


def _admit_rerun(gw: Gateway, who: Principal, row: SubmissionRow) -> None:
    """A retry makes a run: the policy judges it as of now (the pipeline's owner and the
    team's grants may have changed since the submission) and it takes a quota slot."""
    reject = rejecter(gw, who, "retry", row.id, row.spec_sha256, {})
    registered = gw.registry.get(row.pipeline_id)
    stored = json.loads(row.params or "{}").get("runtime_params") or {}
    try:
        params = parse_params({**stored, "submission_id": row.id})
    except SpecError as err:
        message = f"submission {row.id}: its runtime params no longer validate: {err.lines[0]}"
        raise reject(409, message) from None
    spec = registered.spec if registered is not None else None
    admission(gw, who, Action.RETRY, spec, params, reject)
    # the caller's team, or for an admin the submission's
    take_slot(gw, row.team, "retry", row.id, reject)


def _owned(gw: Gateway, who: Principal, submission_id: str) -> SubmissionRow:
    return owned(who, "submission", submission_id, gw.store.get(submission_id), lambda r: r.team)


def _decided(
    gw: Gateway,
    who: Principal,
    action: str,
    submission_id: str,
    digest: str,
    fn: Callable[[], str],
) -> str:
    """Run a cancel/retry and append its decision, whichever way it went."""
    try:
        run_id = fn()
    except (SubmissionError, DagsterAPIError) as err:
        gw.refusals.refused(
            actor=who.token_id,
            team=who.team,
            action=action,
            subject=submission_id,
            spec_sha256=digest,
            detail=str(err),
        )
        raise ApiError(err.status, str(err)) from None
    gw.audit.append(
        actor=who.token_id,
        team=who.team,
        action=action,
        subject=submission_id,
        spec_sha256=digest,
        decision="accepted",
        detail=f"run {run_id}",
    )
    return run_id
