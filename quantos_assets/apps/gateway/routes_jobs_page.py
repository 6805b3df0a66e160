"""Seed 003 §6: a page for the team's scheduled jobs, served by the gateway (issue 21, point 2).

Server-rendered (Jinja2 templates beside this module, no script): sign in with an API token
(jobs_page_session.py), list the team's jobs (filter, sort, search: all in the query string,
so a link shows the same list), schedule, edit, cancel after a confirmation step, retry a
failed job, and follow a job's runs in the Dagster UI. Every action calls the API's own
route function (routes_jobs.py) with the signed-in principal, so the page has the API's
scopes, validation, admission, quotas and audit; another team's job is a 404 here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from quantos_assets.apps.gateway import routes_jobs
from quantos_assets.apps.gateway.auth import ApiError, authenticate
from quantos_assets.apps.gateway.dagster_links import job_runs_url
from quantos_assets.apps.gateway.job_views import job_view
from quantos_assets.apps.gateway.jobs_page_forms import (
    FIELDS,
    JobForm,
    job_update,
    refusal,
    schedule_request,
)
from quantos_assets.apps.gateway.jobs_page_session import (
    PAGE_PATH,
    PageRefused,
    SignIn,
    checked_post,
    page_base,
    same_site,
    sign_in,
    sign_out,
    signed_in,
)
from quantos_assets.apps.gateway.schemas import JobStatus, JobView
from quantos_assets.apps.gateway.tokens import Principal
from quantos_assets.apps.gateway.wiring import CurrentGateway, Gateway
from quantos_assets.stores.job_store import ScheduledJob

router = APIRouter(prefix=PAGE_PATH, include_in_schema=False)
_TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

SORTS = {
    "next_run_at": "next fire",
    "pipeline_id": "pipeline",
    "created_at": "created",
    "status": "status",
}
STATUSES: tuple[str, ...] = get_args(JobStatus)
# What a redirect after an action says: a fixed text per key, never text from the request.
NOTICES = {
    "scheduled": "Job scheduled.",
    "edited": "Job updated.",
    "canceled": "Job canceled: no further runs, and its active runs were terminated.",
    "retried": "Retry launched: the job's latest run re-executes the failed one from failure.",
    "signed_out": "Signed out.",
}
# Nothing here may be framed (a cancel button under someone else's page), cached or
# scripted; forms post back to the page only.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
Field = Annotated[str, Form()]
T = TypeVar("T")


def install_jobs_page(app: FastAPI) -> None:
    """The page's routes and its refusals as pages (the API's stay JSON)."""
    app.include_router(router)
    app.exception_handler(PageRefused)(_refused)


# -- sign in / out ---------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, notice: str = "") -> Response:
    return _page(request, "login.html", {"notice": NOTICES.get(notice)})


@router.post("/login")
def login(request: Request, token: Field = "") -> Response:
    """Check the token as the API does (401/403 the form again, one line, the token never
    shown back); valid: the sign-in cookie, and the list."""
    same_site(request)
    try:
        authenticate(request.app.state.gateway.tokens, token.strip() or None, "read")
    except ApiError as err:
        status = 401 if err.status == 401 else 403
        return _page(request, "login.html", {"error": err.message}, status)
    response = RedirectResponse(page_base(request), status_code=303)
    sign_in(request, response, token.strip())
    return response


@router.post("/logout")
def logout(request: Request, csrf: Field = "") -> Response:
    checked_post(request, csrf, "read")
    response = RedirectResponse(f"{page_base(request)}/login?notice=signed_out", status_code=303)
    sign_out(request, response)
    return response


# -- the list ----------------------------------------------------------------------------------


@router.get("")
def job_list(
    request: Request,
    gw: CurrentGateway,
    type: str = "",
    status: str = "",
    search: str = "",
    sort: str = "next_run_at",
    order: str = "asc",
    notice: str = "",
) -> Response:
    """The team's jobs: `type`, `status` and `search` filter, `sort` and `order` sort, as the
    API's GET /api/jobs does (the same function)."""
    session = signed_in(request, "read")
    if sort not in SORTS or order not in ("asc", "desc") or (status and status not in STATUSES):
        raise PageRefused(
            400,
            f"sort is one of {', '.join(SORTS)}, order asc or desc, status one of "
            f"{', '.join(STATUSES)}",
        )
    views = _api(
        lambda: routes_jobs.list_jobs(
            gw,
            session.who,
            type=type or None,
            status=status or None,  # type: ignore[arg-type]  # checked against STATUSES above
            search=search[:200] or None,
            sort=sort,  # type: ignore[arg-type]  # checked against SORTS above
            order=order,  # type: ignore[arg-type]
            limit=500,
        )
    )
    query = {"type": type, "status": status, "search": search, "sort": sort, "order": order}
    return _page(
        request,
        "list.html",
        {
            "session": session,
            "jobs": views,
            "query": query,
            "types": sorted({j.type for j in gw.jobs.list(_team_of(session.who))}),
            "statuses": STATUSES,
            "sorts": SORTS,
            "notice": NOTICES.get(notice),
            "sort_link": lambda key: _sort_link(request, query, key),
            "runs_url": lambda job_id: job_runs_url(gw.settings.dagster_url, job_id),
        },
    )


# -- schedule ----------------------------------------------------------------------------------


@router.get("/new")
def new_form(request: Request, gw: CurrentGateway) -> Response:
    session = signed_in(request, "submit")
    form = JobForm(dict.fromkeys(FIELDS, "") | {"kind": "none", "type": "pipeline"})
    return _form_page(request, gw, session, form, None)


@router.post("/new")
def schedule(
    request: Request,
    gw: CurrentGateway,
    csrf: Field = "",
    pipeline: Field = "",
    type: Field = "",
    description: Field = "",
    execution_time: Field = "",
    kind: Field = "none",
    cron: Field = "",
    calendar: Field = "",
    at: Field = "",
    timezone: Field = "",
    runtime_params: Field = "",
    nodes: Field = "",
) -> Response:
    """The schedule form: the API's ScheduleRequest, then its POST /api/jobs/schedule."""
    session = checked_post(request, csrf, "submit")
    values = locals()
    form = JobForm({name: values[name] for name in FIELDS})
    body = schedule_request(form)
    if body is not None:
        try:
            made = routes_jobs.schedule(body, gw, session.who)
        except ApiError as err:
            refusal(form, err)
        else:
            return _redirect(request, f"/{made.job_id}", "scheduled")
    return _form_page(request, gw, session, form, None, status=422)


# -- one job: view, edit, cancel, retry ------------------------------------------------------


@router.get("/{job_id}")
def job_page(request: Request, gw: CurrentGateway, job_id: str, notice: str = "") -> Response:
    session = signed_in(request, "read")
    view = _view(gw, _own(gw, session.who, job_id))
    return _page(
        request,
        "job.html",
        {
            "session": session,
            "job": view,
            "notice": NOTICES.get(notice),
            "runs_url": job_runs_url(gw.settings.dagster_url, view.job_id),
        },
    )


@router.get("/{job_id}/edit")
def edit_form(request: Request, gw: CurrentGateway, job_id: str) -> Response:
    session = signed_in(request, "submit")
    job = _own(gw, session.who, job_id)
    return _form_page(request, gw, session, JobForm.of_job(job), job)


@router.post("/{job_id}/edit")
def edit(
    request: Request,
    gw: CurrentGateway,
    job_id: str,
    csrf: Field = "",
    description: Field = "",
    execution_time: Field = "",
    kind: Field = "none",
    cron: Field = "",
    calendar: Field = "",
    at: Field = "",
    timezone: Field = "",
    runtime_params: Field = "",
    nodes: Field = "",
) -> Response:
    """The edit form: the API's JobUpdate of what changed, then its PUT /api/jobs/{id}."""
    session = checked_post(request, csrf, "submit")
    job = _own(gw, session.who, job_id)
    stored = JobForm.of_job(job)
    values = locals()
    typed = {name: values[name] for name in FIELDS if name in values and name != "type"}
    form = JobForm(stored.values | typed)
    body = job_update(form, stored)
    if body is not None:
        try:
            routes_jobs.edit_job(job_id, body, gw, session.who)
        except ApiError as err:
            refusal(form, err)
        else:
            return _redirect(request, f"/{job_id}", "edited")
    return _form_page(request, gw, session, form, job, status=422)


@router.get("/{job_id}/cancel")
def cancel_confirmation(request: Request, gw: CurrentGateway, job_id: str) -> Response:
    """Cancel's confirmation step: what it stops, and the button that does it."""
    session = signed_in(request, "submit")
    view = _view(gw, _own(gw, session.who, job_id))
    return _page(request, "cancel.html", {"session": session, "job": view})


@router.post("/{job_id}/cancel")
def cancel(request: Request, gw: CurrentGateway, job_id: str, csrf: Field = "") -> Response:
    session = checked_post(request, csrf, "submit")
    _own(gw, session.who, job_id)
    _api(lambda: routes_jobs.cancel_job(job_id, gw, session.who))
    return _redirect(request, f"/{job_id}", "canceled")


@router.post("/{job_id}/retry")
def retry(request: Request, gw: CurrentGateway, job_id: str, csrf: Field = "") -> Response:
    """Offered on failed jobs only (the API would also re-execute a canceled run)."""
    session = checked_post(request, csrf, "submit")
    view = _view(gw, _own(gw, session.who, job_id))
    if view.status != "failed":
        raise PageRefused(409, f"job {job_id} is {view.status}: only a failed job is retried")
    _api(lambda: routes_jobs.retry_job(job_id, gw, session.who))
    return _redirect(request, f"/{job_id}", "retried")


# -- helpers -------------------------------------------------------------------------------------


def _own(gw: Gateway, who: Principal, job_id: str) -> ScheduledJob:
    """The job if the signed-in team owns it (or is admin): otherwise 404, whether it is
    another team's or none at all, so ids cannot be probed from the page."""
    job = gw.jobs.get(job_id)
    if job is None or (job.team != who.team and "admin" not in who.scopes):
        raise PageRefused(404, "no such job among your team's jobs")
    return job


def _team_of(who: Principal) -> str | None:
    return None if "admin" in who.scopes else who.team


def _view(gw: Gateway, job: ScheduledJob) -> JobView:
    return _api(lambda: job_view(gw, job, time.time()))


def _api(call: Callable[[], T]) -> T:
    """An API route's refusal as the page's."""
    try:
        return call()
    except ApiError as err:
        detail = f"{err.message}: {'; '.join(err.lines)}" if err.lines else err.message
        raise PageRefused(err.status, detail) from None


def _form_page(
    request: Request,
    gw: CurrentGateway,
    session: SignIn,
    form: JobForm,
    job: ScheduledJob | None,
    status: int = 200,
) -> Response:
    mine = [p for p in sorted(gw.registry.pipelines()) if gw.registry.owner(p) == session.who.team]
    context = {"session": session, "form": form, "job": job, "pipelines": mine}
    return _page(request, "form.html", context, status)


def _sort_link(request: Request, query: dict[str, str], key: str) -> str:
    """The list sorted by `key`: ascending, or the other way round if it already is."""
    flip = query["sort"] == key and query["order"] == "asc"
    params = {k: v for k, v in query.items() if v}
    params |= {"sort": key, "order": "desc" if flip else "asc"}
    return f"{page_base(request)}?{urlencode(params)}"


def _redirect(request: Request, path: str, notice: str) -> Response:
    return RedirectResponse(f"{page_base(request)}{path}?notice={notice}", status_code=303)


def _page(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    context = {"base": page_base(request)} | context
    response = _TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(_HEADERS)
    return response


def _refused(request: Request, err: Exception) -> Response:
    assert isinstance(err, PageRefused)
    if err.status == 401:
        login = _page(request, "login.html", {"error": err.message}, 401)
        return login
    return _page(request, "error.html", {"status": err.status, "message": err.message}, err.status)
