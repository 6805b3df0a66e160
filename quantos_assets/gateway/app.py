"""The REST submission gateway (seed 000 §8): authenticated, team-scoped, audited.

It talks to Dagster over GraphQL only (through `QuantosClient`), so it runs beside the
webserver (or anywhere that reaches it) and adds what Dagster OSS lacks for a compiler
calling it: bearer-token authentication with scopes, team ownership of submissions,
per-team quotas, an append-only audit trail, and 4xx answers that say what to fix.
"""
from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from quantos_assets.admission.request import Action
from quantos_assets.client.graphql import DagsterAPIError
from quantos_assets.client.submissions import (
    SubmissionError,
    parse_params,
    spec_digest,
)
from quantos_assets.gateway.auth import ERRORS, ApiError, Reader, Submitter, answer
from quantos_assets.gateway.jobs_api import build_router
from quantos_assets.gateway.metrics_route import build_metrics_router
from quantos_assets.gateway.policy import (
    ONE_SPEC_SOURCE,
    admission,
    owned,
    rejecter,
    resolve_spec,
    take_slot,
)
from quantos_assets.gateway.request_body import RequestBodyMiddleware
from quantos_assets.gateway.settings import GatewaySettings
from quantos_assets.gateway.submission_store import (
    CANCELED,
    FAILED,
    LAUNCHING,
    QUEUED,
    SubmissionRow,
)
from quantos_assets.gateway.tokens import Principal
from quantos_assets.gateway.wiring import Gateway, build_gateway
from quantos_assets.spec.errors import SpecError
from resources.redaction import install_log_redaction, redact
from resources.sql_store import reading

API_VERSION = "1"


# -- request and response bodies ----------------------------------------------------------------


class SubmitRequest(BaseModel):
    """Seed 000 §8.1: exactly one of the spec inline (`dag_spec`) or a registered pipeline
    (`spec_ref`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_SPEC_SOURCE)

    dag_spec: dict[str, Any] | None = Field(default=None, description="the DAG spec (seed 000 §3.1)")
    spec_ref: str | None = Field(default=None, description="pipeline_id of a spec already in the registry")
    runtime_params: dict[str, Any] = Field(default_factory=dict, description="seed 000 §3.2; submission_id optional")
    refs: dict[str, Any] = Field(default_factory=dict, description="opaque references kept in the audit record")
    nodes: list[str] | None = Field(default=None, description="run only these nodes")
    partition: str | None = Field(default=None, description="session (YYYY-MM-DD) of a session-partitioned spec")


class SubmitAccepted(BaseModel):
    """202: committed to the gateway's launch queue; `run_id` once Dagster has the run
    (null on the first answer; status_url shows it, or why the launch failed)."""

    submission_id: str
    run_id: str | None
    state: str = Field(description="queued, launching, launched, failed or canceled")
    pipeline_id: str
    spec_sha256: str
    status_url: str = Field(
        description="where to follow it: QUANTOS_PUBLIC_URL + path when the gateway has one, else the path"
    )


class ActionResult(BaseModel):
    submission_id: str
    run_id: str | None
    action: str


def create_app(settings: GatewaySettings, gateway: Gateway | None = None) -> FastAPI:
    install_log_redaction()  # before anything logs: QUANTOS_DAGSTER_URL may carry a password
    gw = gateway or build_gateway(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        gw.dispatcher.stop()  # claims not in a launch call lapse now: a running gateway takes them

    app = FastAPI(
        title="QuantOS submission API",
        version=API_VERSION,
        description="Submit compiler DAG specs, follow, cancel and retry them. Bearer token required.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestBodyMiddleware, max_bytes=settings.max_body_bytes)
    app.state.gateway = gw
    gw.dispatcher.start()  # and re-queue what a previous gateway accepted but did not launch
    app.include_router(build_router())
    app.include_router(build_metrics_router())
    @app.exception_handler(ApiError)
    def _api_error(_request: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.message, err.lines, err.headers)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            ctx = next(p for p in problems if p.get("type") == "json_invalid").get("ctx", {})
            return _error(400, f"request body is not valid JSON: {ctx.get('error', 'parse error')}")
        lines = [f"{'.'.join(str(x) for x in p['loc'])}: {p['msg']}" for p in problems]
        return _error(422, "invalid request", lines)

    @app.exception_handler(HTTPException)
    def _http_error(request: Request, err: HTTPException) -> JSONResponse:
        """Starlette's own answers (unknown path, method not allowed) in the documented shape."""
        headers = dict(err.headers or {})
        message = str(err.detail)
        if err.status_code == 405:
            allowed = _allowed_methods(request, headers.get("Allow", ""))
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
        elif err.status_code == 404:
            message = f"no endpoint {request.url.path} (see /docs)"
        return _error(err.status_code, message, headers=headers)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/orch/submit", status_code=202, response_model=SubmitAccepted, responses=ERRORS)
    def submit(body: SubmitRequest, request: Request, who: Submitter) -> SubmitAccepted:
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
        try:
            params = parse_params(body.runtime_params)
        except SpecError as err:
            raise ApiError(422, "invalid runtime_params", err.lines) from None
        digest = spec_digest(loaded.spec)
        audit = {"runtime_params": params.model_dump(mode="json"), "refs": body.refs, "nodes": body.nodes, "partition": body.partition}

        reject = rejecter(gw, who, "submit", params.submission_id, digest, audit)
        try:  # what the launch itself would refuse, refused now: nothing stored
            gw.client.check(loaded.spec, body.nodes, body.partition)
        except SubmissionError as err:
            raise reject(err.status, str(err)) from None
        gw.usage.ask_dagster(who.team)
        with reading(gw.store.engine) as snapshot:  # one read transaction for the checks below
            resent = gw.store.get(params.submission_id, snapshot)
            if resent is not None:  # a re-send costs nothing: answered before the quotas
                return _resent(gw, resent, who, digest, audit, loaded.spec.pipeline_id, reject)
            admission(gw, who, Action.SUBMIT, loaded.spec, params, reject, gw.usage.within(snapshot))
        if gw.dispatcher.backlog() >= gw.settings.max_backlog:
            raise reject(503, f"{gw.dispatcher.backlog()} submissions are waiting to launch; try again shortly", {"Retry-After": "5"})
        policy = gw.teams.policy(who.team)
        request_json = {
            "dag_spec": body.dag_spec, "spec_ref": body.spec_ref, "nodes": body.nodes, "partition": body.partition,
            "runtime_params": params.model_dump(mode="json", exclude_none=True),
            # The launch registers the spec: an admin's may replace another team's pipeline.
            **({"admin": True} if "admin" in who.scopes else {}),
        }
        stored = gw.store.admit(
            submission_id=params.submission_id, team=who.team, actor=who.token_id,
            pipeline_id=loaded.spec.pipeline_id, spec_sha256=digest, params=audit,
            per_minute=policy.submissions_per_minute, request=request_json,
            audit=lambda conn: gw.audit.record(
                conn, actor=who.token_id, team=who.team, action="submit", subject=params.submission_id,
                spec_sha256=digest, params=audit, decision="accepted", detail="queued for launch",
            ),
        )
        if stored.existing is not None:  # sent twice at once: the other copy won
            return _resent(gw, stored.existing, who, digest, audit, loaded.spec.pipeline_id, reject)
        if stored.row is None or stored.audited is None:  # the window filled since the policy looked
            raise reject(
                429,
                f"team {who.team} reached {policy.submissions_per_minute} submissions per minute",
                {"Retry-After": str(stored.retry_after)},
            )
        gw.audit.anchor_head(stored.audited)
        gw.dispatcher.enqueue(params.submission_id)
        return _accepted(gw, stored.row, loaded.spec.pipeline_id)

    @app.get("/api/orch/status/{submission_id}", responses=ERRORS)
    def status(submission_id: str, who: Reader) -> dict[str, Any]:
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

    @app.get("/api/orch/logs/{submission_id}", responses=ERRORS)
    def logs(
        submission_id: str,
        who: Reader,
        node: Annotated[str | None, Query(description="only this node's lines")] = None,
    ) -> dict[str, Any]:
        """The latest run's event log: `lines` of `time`, `level`, `node`, `event`, `message`,
        `submission_id`, `pipeline_id`, `run_id`; with `node`, that node's lines only. 409
        while the submission has no run yet."""
        row = _launched(_owned(gw, who, submission_id))
        return {"submission_id": submission_id, "node": node, "lines": answer(lambda: gw.client.logs(submission_id, node, row.team))}

    @app.get("/api/orch/lineage/{submission_id}", responses=ERRORS)
    def lineage(submission_id: str, who: Reader) -> dict[str, Any]:
        """What the latest run produced and read: `assets` (each `key`, `partition`, Iceberg
        `table`/`snapshot_id`/`rows` or artifact `uri`/`sha256`, and its `upstream` and
        `downstream` asset keys) and `inputs` (each step's input with the snapshot or
        artifact it loaded). 409 while the submission has no run yet."""
        row = _launched(_owned(gw, who, submission_id))
        return answer(lambda: gw.client.lineage(submission_id, row.team))

    @app.post("/api/orch/cancel/{submission_id}", response_model=ActionResult, responses=ERRORS)
    def cancel(submission_id: str, who: Submitter) -> ActionResult:
        """Cancel: a submission not launched yet is dropped from the launch queue (`run_id`
        null), also while a gateway is retrying its launch (a run created by a launch call
        already in flight is terminated); otherwise its active run is terminated. 409 when
        there is nothing to cancel."""
        row = _owned(gw, who, submission_id)
        if row.run_id is None and gw.store.cancel_queued(submission_id):
            gw.audit.append(actor=who.token_id, team=who.team, action="cancel", subject=submission_id,
                            spec_sha256=row.spec_sha256, decision="accepted", detail="canceled before launch")
            gw.dispatcher.wake(submission_id)  # a launch thread of this gateway waiting on it stops now
            return ActionResult(submission_id=submission_id, run_id=None, action="cancel")
        _launched(gw.store.get(submission_id) or row)
        run_id = _decided(gw, who, "cancel", submission_id, row.spec_sha256, lambda: gw.client.cancel(submission_id, row.team))
        return ActionResult(submission_id=submission_id, run_id=run_id, action="cancel")

    @app.post("/api/orch/retry/{submission_id}", response_model=ActionResult, responses=ERRORS)
    def retry(submission_id: str, who: Submitter) -> ActionResult:
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
                gw.audit.append(actor=who.token_id, team=who.team, action="retry", subject=submission_id,
                                spec_sha256=row.spec_sha256, decision="accepted", detail=detail)
                gw.dispatcher.enqueue(submission_id)
                gw.dispatcher.wake(submission_id)
                return ActionResult(submission_id=submission_id, run_id=None, action="retry")
            row = gw.store.get(submission_id) or row  # launched or canceled meanwhile
        _launched(row)
        run_id = _decided(gw, who, "retry", submission_id, row.spec_sha256, lambda: gw.client.retry(submission_id, row.team))
        gw.store.set_run(submission_id, run_id, attempt=len(gw.store.run_ids(submission_id)) + 1)
        return ActionResult(submission_id=submission_id, run_id=run_id, action="retry")

    @app.get("/api/orch/submissions", responses=ERRORS)
    def submissions(
        who: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        """The team's submissions, newest first (every team's with an `admin` token): id, team,
        pipeline, `run_id`, `state` (queued, launching, launched, failed, canceled), the launch
        `error` if any, `attempts`, `last_error` and `next_attempt_at` of its launch (as in
        status), the spec hash and the time it was accepted."""
        team = None if "admin" in who.scopes else who.team
        return [
            {"submission_id": r.id, "team": r.team, "pipeline_id": r.pipeline_id, "run_id": r.run_id,
             "state": r.state, "error": r.error and redact(r.error), "attempts": r.attempts,
             "last_error": r.last_error and redact(r.last_error), "next_attempt_at": r.next_attempt_at,
             "spec_sha256": r.spec_sha256, "created_at": r.created_at}
            for r in gw.store.list(team, limit)
        ]

    return app


# -- helpers of the endpoints ------------------------------------------------------------------


def _error(status: int, message: str, lines: list[str] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every 4xx/5xx the gateway writes: `{error, lines}`, with credentials in URLs redacted
    (a Dagster or database error may quote a URL with its password)."""
    message = redact(message)
    return JSONResponse(
        {"error": message, "lines": [redact(line) for line in lines] if lines else [message]},
        status_code=status,
        headers=headers,
    )


def _allowed_methods(request: Request, fallback: str) -> list[str]:
    """The methods the API documents for this path (RFC 9110: a 405 lists them all).

    Starlette names only the methods of the first route whose path matches, so
    `OPTIONS /api/jobs/ID` said `Allow: GET` where PUT and DELETE exist too. The OpenAPI
    document is the contract clients read; where several templates match, the most
    specific one (fewest parameters) is the resource. Undocumented routes (/healthz,
    /metrics) keep Starlette's `fallback`.
    """
    best: tuple[int, list[str]] | None = None
    for template, operations in request.app.openapi()["paths"].items():
        parts = re.split(r"(\{[^/}]+\})", template)
        regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        if re.fullmatch(regex, request.url.path):
            params = template.count("{")
            if best is None or params < best[0]:
                methods = {m.upper() for m in operations}
                best = (params, sorted(methods))
    return best[1] if best else [m.strip() for m in fallback.split(",") if m.strip()]


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
    gw: Gateway, existing: SubmissionRow, who: Principal, digest: str, audit: dict[str, Any], pipeline_id: str,
    reject: Callable[..., ApiError],
) -> SubmitAccepted:
    """The same submission_id again: the same submission if the spec and params are the same."""
    same = (
        existing.team == who.team
        and existing.spec_sha256 == digest
        and json.loads(existing.params) == json.loads(json.dumps(audit, sort_keys=True))
    )
    if not same:
        raise reject(409, f"submission_id {existing.id!r} is already used by another submission")
    if existing.state in (FAILED, CANCELED):
        raise reject(409, _ended_before_launch(existing))
    return _accepted(gw, existing, pipeline_id)


# What a submission's status is before Dagster has a run for it.
_UNLAUNCHED_STATUS = {QUEUED: "ACCEPTED", LAUNCHING: "ACCEPTED", FAILED: "LAUNCH_FAILED", CANCELED: "CANCELED"}


def _not_launched(row: SubmissionRow) -> dict[str, Any]:
    return {
        "submission_id": row.id, "pipeline_id": row.pipeline_id, "status": _UNLAUNCHED_STATUS.get(row.state, "ACCEPTED"),
        "run_id": None, "runs": [], "steps": [], "error": row.error and redact(row.error),
        "attempts": row.attempts, "last_error": row.last_error and redact(row.last_error),
        "next_attempt_at": row.next_attempt_at,
    }


def _ended_before_launch(row: SubmissionRow) -> str:
    """Why re-sending a submission that never got a run does not launch it again."""
    if row.state == FAILED:
        return (
            f"submission {row.id} failed to launch ({row.error or 'no reason recorded'}): retry it with "
            f"POST /api/orch/retry/{row.id} or use a new submission_id"
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
        raise reject(409, f"submission {row.id}: its runtime params no longer validate: {err.lines[0]}") from None
    admission(gw, who, Action.RETRY, registered.spec if registered is not None else None, params, reject)
    take_slot(gw, row.team, "retry", row.id, reject)  # the caller's team, or for an admin the submission's


def _owned(gw: Gateway, who: Principal, submission_id: str) -> SubmissionRow:
    return owned(who, "submission", submission_id, gw.store.get(submission_id), lambda r: r.team)


def _decided(gw: Gateway, who: Principal, action: str, submission_id: str, digest: str, fn: Callable[[], str]) -> str:
    """Run a cancel/retry and append its decision, whichever way it went."""
    try:
        run_id = fn()
    except (SubmissionError, DagsterAPIError) as err:
        gw.refusals.refused(actor=who.token_id, team=who.team, action=action, subject=submission_id,
                            spec_sha256=digest, detail=str(err))
        raise ApiError(err.status, str(err)) from None
    gw.audit.append(actor=who.token_id, team=who.team, action=action, subject=submission_id,
                    spec_sha256=digest, decision="accepted", detail=f"run {run_id}")
    return run_id


__all__ = ["Gateway", "build_gateway", "create_app"]
