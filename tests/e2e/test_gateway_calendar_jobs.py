"""Scheduled jobs over the gateway (issue 21, points 1 and 2), against a real `dagster dev` and
`quantos gateway`: calendar recurrences over the REST API, and the jobs page in Chromium.

What a client sees: `{"calendar": "XNYS", "at": "close+30m"}` instead of a cron, the job's next
fire times (`next_fires`, cron jobs too) equal to exchange-calendars' own session closes, a
recurrence switched between cron and calendar by PUT, one-line 422s naming `calendar` / `at`
with nothing stored, and a calendar job fired by the code location's `gateway_jobs` sensor
through Dagster, once.

The jobs page (seed 003 §6) is driven here, on this module's stack, rather than on a stack of
its own: a `dagster dev` costs ~15 s of CPU to start, and the page needs nothing more than
these jobs' gateway. In Chromium (Playwright, /usr/bin/chromium, as test_browser_ui.py), a
user signs in with a token and schedules, lists (filter, sort, search), edits, cancels (after
a confirmation step) and retries a failed job; a form without this sign-in's CSRF token is
refused; another team sees none of these jobs and cannot touch one by its id. Screenshots of
each step land in .quantos/artifacts/screenshots/<test>/ (gitignored).
"""

from __future__ import annotations

import itertools
import re
import shutil
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dev_server import LOCATION, REPO, REPOSITORY
from gateway_stack import Stack, gateway_stack, one_node
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from quantos_assets.spec.derived_names import GATEWAY_JOBS_SENSOR

pytestmark = pytest.mark.e2e

PAGE_FLAKY, PAGE_REPORT = "page_flaky", "page_report"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / ".quantos" / "artifacts" / "screenshots"
expect.set_options(timeout=20_000)

TEAMS = {
    "defaults": {"secrets_scopes": [], "max_concurrent_runs": 20, "submissions_per_minute": 600},
    "teams": {"research": {}, "execution": {}},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("calendar_jobs")
    specs = [
        one_node("cal_job", "research", "quantos_assets.tasks.noop:one_row"),
        # the jobs page's (test_jobs_page_*): a pipeline that fails until its flag exists
        one_node(
            PAGE_FLAKY,
            "research",
            "quantos_assets.tasks.control:fail_until",
            flag=str(root / "page_flag"),
        ),
        one_node(PAGE_REPORT, "research", "quantos_assets.tasks.noop:one_row"),
        one_node("exec_report", "execution", "quantos_assets.tasks.noop:one_row"),
    ]
    tokens = [
        ("research", "research", "submit,read"),
        ("research_ro", "research", "read"),
        ("execution", "execution", "submit,read"),
    ]
    with gateway_stack(root, specs, TEAMS, tokens) as made:
        yield made


@pytest.fixture(scope="module", autouse=True)
def due_soon(stack: Stack) -> tuple[datetime, dict[str, Any]]:
    """A 24/7 calendar job due at the first minute boundary at least 20 s away, scheduled as
    the module's stack comes up (its fire time, the POST's response).

    `at` has minute resolution, so the firing test has to wait for a minute boundary; scheduled
    here, that wait runs under the module's other tests (the firing test is the module's last),
    not idle in the test itself."""
    soon = (datetime.now(UTC) + timedelta(seconds=20)).replace(second=0, microsecond=0)
    soon += timedelta(minutes=1)
    made = stack.call(
        "POST",
        "/api/jobs/schedule",
        json={
            "spec_ref": "cal_job",
            "description": "24/7 wall clock",
            "recurrence": {"calendar": "24/7", "at": soon.strftime("%H:%M"), "timezone": "UTC"},
        },
    )
    assert made.status_code == 201, made.text
    return soon, made.json()


def _xc_calendar(code: str) -> Any:  # exchange-calendars' own, not quantos_assets.calendars
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import exchange_calendars

        return exchange_calendars.get_calendar(code)


def _expected_closes(after: float, minutes: int, count: int) -> list[str]:
    """The next `count` XNYS session closes + `minutes` after `after`, New York ISO 8601."""
    xnys = _xc_calendar("XNYS")
    ny = ZoneInfo("America/New_York")
    day = datetime.fromtimestamp(after, ny).date()
    sessions = xnys.sessions_in_range(day.isoformat(), xnys.last_session)
    fires = [(xnys.session_close(s) + timedelta(minutes=minutes)).to_pydatetime() for s in sessions]
    return [f.astimezone(ny).isoformat() for f in fires if f.timestamp() > after][:count]


def _job_ids(stack: Stack) -> set[str]:
    with sqlite3.connect(stack.data_dir / "gateway.db") as conn:
        return {row[0] for row in conn.execute("SELECT id FROM gateway_jobs")}


def test_a_calendar_job_shows_the_exchanges_next_fire_times_and_switches_with_a_cron(
    stack: Stack,
) -> None:
    body = {"spec_ref": "cal_job", "recurrence": {"calendar": "XNYS", "at": "close+30m"}}
    before = time.time()
    made = stack.call("POST", "/api/jobs/schedule", json=body)
    after = time.time()
    assert made.status_code == 201, made.text
    job = made.json()
    assert job["recurrence"] == {
        "cron": None,
        "calendar": "XNYS",
        "at": "close+30m",
        "timezone": "America/New_York",  # the exchange's, as for a spec's schedule block
    }
    # a fire time could pass while the request is served: either side of it is right
    assert job["next_fires"] in (_expected_closes(before, 30, 5), _expected_closes(after, 30, 5))
    first = datetime.fromisoformat(job["next_fires"][0])
    assert job["next_run_at"] == first.astimezone(UTC).isoformat()
    shown = stack.call("GET", f"/api/jobs/{job['job_id']}").json()
    assert shown["next_fires"][0] == job["next_fires"][0] and shown["recurrence"]["at"] == (
        "close+30m"
    )
    assert stack.call("GET", f"/api/jobs/{job['job_id']}", "execution").status_code == 403

    as_cron = stack.call(
        "PUT",
        f"/api/jobs/{job['job_id']}",
        json={"recurrence": {"cron": "0 9 * * 1", "timezone": "Europe/London"}},
    )
    assert as_cron.status_code == 200, as_cron.text
    cron_job = as_cron.json()
    assert cron_job["recurrence"] == {
        "cron": "0 9 * * 1",
        "calendar": None,
        "at": None,
        "timezone": "Europe/London",
    }
    fires = [datetime.fromisoformat(f) for f in cron_job["next_fires"]]
    assert len(fires) == 5 and all(f.weekday() == 0 and f.hour == 9 for f in fires)
    assert all(b - a == timedelta(days=7) for a, b in itertools.pairwise(fires))

    back = stack.call(
        "PUT",
        f"/api/jobs/{job['job_id']}",
        json={"recurrence": {"calendar": "XNYS", "at": "09:00", "timezone": "UTC"}},
    ).json()
    assert back["recurrence"] == {
        "cron": None,
        "calendar": "XNYS",
        "at": "09:00",
        "timezone": "UTC",
    }
    xnys = _xc_calendar("XNYS")
    days = {datetime.fromisoformat(f).date() for f in back["next_fires"]}
    assert all(xnys.is_session(d.isoformat()) for d in days)
    assert {f[10:] for f in back["next_fires"]} == {"T09:00:00+00:00"}

    at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    once = stack.call(
        "PUT",
        f"/api/jobs/{job['job_id']}",
        json={"recurrence": None, "execution_time": at.isoformat()},
    ).json()
    assert once["recurrence"] is None and once["next_fires"] == [at.isoformat()]
    assert stack.call("DELETE", f"/api/jobs/{job['job_id']}").status_code == 200
    assert stack.call("GET", f"/api/jobs/{job['job_id']}").json()["next_fires"] == []


@pytest.mark.parametrize(
    ("recurrence", "line"),
    [
        (
            {"calendar": "XNYZ", "at": "close+30m"},
            "body.recurrence.calendar: Value error, unknown exchange calendar 'XNYZ' (close",
        ),
        (
            {"calendar": "XNYS", "at": "close+30x"},
            "body.recurrence.at: Value error, invalid market time 'close+30x': expected open|close",
        ),
        (
            {"calendar": "XNYS", "at": "open-25h"},
            "body.recurrence.at: Value error, offset in 'open-25h' is more than a day",
        ),
        (
            {"calendar": "XNYS", "at": "close", "cron": "30 16 * * 1-5"},
            "body.recurrence: Value error, give recurrence.cron or recurrence.calendar, not both",
        ),
        ({"timezone": "UTC"}, "body.recurrence: Value error, give recurrence.cron, or "),
        (
            {"calendar": "XNYS"},
            "body.recurrence: Value error, recurrence.at is required with recurrence.calendar",
        ),
        (
            {"cron": "30 16 * * 1-5", "at": "close"},
            "body.recurrence: Value error, recurrence.at goes with recurrence.calendar",
        ),
    ],
)
def test_a_bad_calendar_recurrence_is_one_422_line_naming_the_field_and_stores_nothing(
    stack: Stack, recurrence: dict[str, str], line: str
) -> None:
    stored = _job_ids(stack)
    res = stack.call(
        "POST", "/api/jobs/schedule", json={"spec_ref": "cal_job", "recurrence": recurrence}
    )
    assert res.status_code == 422, res.text
    assert res.json()["error"] == "invalid request"
    [only] = res.json()["lines"]
    assert only.startswith(line), only
    assert _job_ids(stack) == stored

    made = stack.call(
        "POST",
        "/api/jobs/schedule",
        json={"spec_ref": "cal_job", "recurrence": {"cron": "0 9 * * *"}},
    ).json()
    edit = stack.call("PUT", f"/api/jobs/{made['job_id']}", json={"recurrence": recurrence})
    assert edit.status_code == 422 and edit.json()["lines"][0].startswith(line), edit.text
    unchanged = stack.call("GET", f"/api/jobs/{made['job_id']}").json()
    assert unchanged["recurrence"]["cron"] == "0 9 * * *"
    stack.call("DELETE", f"/api/jobs/{made['job_id']}")


def test_a_first_fire_beyond_the_sessions_the_calendar_knows_is_a_422_naming_execution_time(
    stack: Stack,
) -> None:
    stored = _job_ids(stack)
    later = (datetime.now(UTC) + timedelta(days=3 * 365)).replace(microsecond=0)
    res = stack.call(
        "POST",
        "/api/jobs/schedule",
        json={
            "spec_ref": "cal_job",
            "execution_time": later.isoformat(),
            "recurrence": {"calendar": "XNYS", "at": "close+30m"},
        },
    )
    assert res.status_code == 422, res.text
    [only] = res.json()["lines"]
    assert only.startswith(f"execution_time {later.isoformat()}: no XNYS session after "), only
    assert "is known yet (the calendar has sessions up to " in only
    assert _job_ids(stack) == stored


# -- the jobs page (issue 21, point 2; seed 003 §6), in Chromium ------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


class JobsPage:
    """One browser profile (its own cookies) on the stack's jobs page, with numbered
    screenshots of the steps of one test."""

    def __init__(
        self, context: BrowserContext, stack: Stack, shots: Path, steps: Iterator[int]
    ) -> None:
        self.context, self.stack, self.shots, self.steps = context, stack, shots, steps
        self.page: Page = context.new_page()

    def open(self, path: str = "") -> Page:
        self.page.goto(f"{self.stack.url}/jobs{path}")
        return self.page

    def sign_in(self, token: str) -> None:
        self.open("/login")
        self.page.get_by_label("API token").fill(self.stack.tokens[token])
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", name=re.compile("^Jobs of team "))).to_be_visible()

    def shot(self, name: str) -> None:
        step = next(self.steps)  # numbered across the test's profiles
        self.page.screenshot(path=str(self.shots / f"{step:02d}-{name}.png"), full_page=True)

    def csrf(self) -> str:
        value = self.page.locator("input[name=csrf]").first.get_attribute("value")
        assert value, self.page.content()
        return value

    def post(self, path: str, form: dict[str, str | float | bool]) -> int:
        """A form POST with this profile's cookies, as another page's form would send it."""
        res = self.context.request.post(f"{self.stack.url}/jobs{path}", form=form)
        return res.status

    def rows(self) -> list[str]:
        """The job ids the list shows, in its order."""
        ids = self.page.locator("#jobs tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.jobId)"
        )
        return [str(i) for i in ids]


@pytest.fixture
def jobs_page(
    browser: Browser, stack: Stack, request: pytest.FixtureRequest
) -> Iterator[Callable[[], JobsPage]]:
    """`jobs_page()`: a new browser profile (signed out) on the page; screenshots per test."""
    shots = SHOTS / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    contexts: list[BrowserContext] = []
    steps = itertools.count(1)

    def new() -> JobsPage:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(20_000)
        contexts.append(context)
        return JobsPage(context, stack, shots, steps)

    yield new
    for context in contexts:
        context.close()


def _fill(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        page.locator(f"[name={name}]").fill(value)


def _api_job(stack: Stack, job_id: str, token: str = "research") -> dict[str, Any]:
    res = stack.call("GET", f"/api/jobs/{job_id}", token)
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


def _reload_until(page: Page, locator: str, text: str, timeout: float = 150) -> None:
    """Reload the page until `locator` reads `text` (a job's state changes in Dagster)."""
    deadline = time.monotonic() + timeout
    while page.locator(locator).first.inner_text().strip() != text:
        assert time.monotonic() < deadline, page.locator(locator).first.inner_text()
        time.sleep(1)
        page.reload()


def test_jobs_page_schedule_list_filter_sort_and_search(
    stack: Stack, jobs_page: Callable[[], JobsPage]
) -> None:
    ui = jobs_page()
    page = ui.open()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API token").fill("qos_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("invalid or revoked token")
    assert "qos_not-a-token" not in page.content()  # never echoed back
    ui.shot("bad-token")
    ui.sign_in("research")
    [cookie] = [c for c in ui.context.cookies() if c["name"] == "quantos_jobs_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/jobs"

    # A one-off run now of the pipeline that fails (retried in the last page test).
    page.get_by_role("link", name="Schedule a job").click()
    _fill(page, pipeline=PAGE_FLAKY, type="training", description="page: flaky once")
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_role("status")).to_have_text("Job scheduled.")
    flaky_id = page.url.split("/jobs/", 1)[1].split("?")[0]

    # The API's own validation, next to the fields it names; nothing stored.
    stored = _job_ids(stack)
    ui.open("/new")
    _fill(page, pipeline=PAGE_REPORT, type="reporting", calendar="XNYZ", at="close+30x")
    page.get_by_label("trading calendar").check()
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#error-calendar")).to_contain_text("unknown exchange calendar 'XNYZ'")
    expect(page.locator("#error-at")).to_contain_text("invalid market time 'close+30x'")
    assert page.locator("[name=pipeline]").input_value() == PAGE_REPORT  # kept as typed
    ui.shot("schedule-errors")
    assert _job_ids(stack) == stored
    _fill(page, calendar="XNYS", at="close+30m", description="page: month-end report")
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_role("status")).to_have_text("Job scheduled.")
    calendar_id = page.url.split("/jobs/", 1)[1].split("?")[0]
    api = _api_job(stack, calendar_id)
    assert api["recurrence"]["calendar"] == "XNYS" and api["recurrence"]["at"] == "close+30m"
    expect(page.locator("#next-fires")).to_contain_text(api["next_fires"][0])
    ui.shot("scheduled-calendar-job")

    ui.open("/new")
    _fill(page, pipeline=PAGE_REPORT, type="reporting", description="page: weekly digest")
    _fill(page, cron="0 9 * * 1", timezone="Europe/London")
    page.get_by_label("cron", exact=True).check()
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_role("status")).to_have_text("Job scheduled.")
    cron_id = page.url.split("/jobs/", 1)[1].split("?")[0]

    # The list: filter by type, search by pipeline, sort; all in a shareable URL.
    ui.open()
    page.get_by_label("Type").select_option("reporting")
    page.get_by_label("Search").fill("page_")
    page.get_by_role("button", name="Apply").click()
    assert set(ui.rows()) == {calendar_id, cron_id}
    fires = {j: _api_job(stack, j)["next_run_at"] for j in (calendar_id, cron_id)}
    assert ui.rows() == sorted(fires, key=lambda j: fires[j])  # by next fire, the sooner first
    page.get_by_role("link", name="Next fire").click()  # the other way round
    assert ui.rows() == sorted(fires, key=lambda j: fires[j], reverse=True)
    assert "type=reporting" in page.url and "sort=next_run_at" in page.url
    assert "order=desc" in page.url
    shared = ui.page.url
    ui.shot("list-filtered-sorted")
    other = jobs_page()  # the same link in another profile of the same team shows the same
    other.sign_in("research")
    other.page.goto(shared)
    assert other.rows() == ui.rows()

    ui.open(f"?search={PAGE_FLAKY}")
    assert ui.rows() == [flaky_id]
    ui.open("?status=canceled&search=page_")
    expect(page.locator("#no-jobs")).to_be_visible()
    ui.open("?sort=pipeline_id&order=asc&search=page_")
    pipelines = page.locator("#jobs td.pipeline").all_inner_texts()
    assert pipelines == sorted(pipelines) and PAGE_FLAKY in pipelines
    ui.shot("list-by-pipeline")


def test_jobs_page_edit_then_cancel_after_confirmation(
    stack: Stack, jobs_page: Callable[[], JobsPage]
) -> None:
    made = stack.call(
        "POST",
        "/api/jobs/schedule",
        json={
            "spec_ref": PAGE_REPORT,
            "type": "reporting",
            "description": "page: to edit",
            "recurrence": {"cron": "30 16 * * 1-5", "timezone": "America/New_York"},
        },
    ).json()
    job_id = made["job_id"]
    ui = jobs_page()
    ui.sign_in("research")
    page = ui.page
    page.locator(f"tr[data-job-id='{job_id}']").get_by_role("link", name="Edit").click()
    assert page.locator("[name=cron]").input_value() == "30 16 * * 1-5"  # as stored
    page.get_by_label("trading calendar").check()
    _fill(page, calendar="XNYS", at="open-25h", timezone="", description="page: edited")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#error-at")).to_contain_text("offset in 'open-25h' is more than a day")
    ui.shot("edit-error")
    assert _api_job(stack, job_id)["recurrence"]["cron"] == "30 16 * * 1-5"  # unchanged
    _fill(page, at="close+30m")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Job updated.")
    api = _api_job(stack, job_id)
    assert api["recurrence"] == {
        "cron": None,
        "calendar": "XNYS",
        "at": "close+30m",
        "timezone": "America/New_York",
    }
    assert api["description"] == "page: edited"
    expect(page.locator("#schedule")).to_have_text("XNYS close+30m (America/New_York)")
    expect(page.locator("#next-fires")).to_contain_text(api["next_fires"][0])
    ui.shot("edited")

    # Cancel: a confirmation step first; "keep it" changes nothing.
    page.get_by_role("link", name="Cancel…").click()
    expect(page.get_by_role("heading", name=f"Cancel job {job_id}?")).to_be_visible()
    ui.shot("cancel-confirmation")
    assert _api_job(stack, job_id)["status"] == "scheduled"
    page.get_by_role("link", name="No, keep it").click()
    assert _api_job(stack, job_id)["status"] == "scheduled"
    page.get_by_role("link", name="Cancel…").click()
    page.get_by_role("button", name="Yes, cancel the job").click()
    expect(page.get_by_role("status")).to_contain_text("Job canceled")
    expect(page.locator("#job [data-status]")).to_have_text("canceled")
    assert _api_job(stack, job_id)["status"] == "canceled"
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    ui.shot("canceled")


def test_jobs_page_refuses_forms_without_this_sign_ins_csrf_token_and_read_only_tokens(
    stack: Stack, jobs_page: Callable[[], JobsPage]
) -> None:
    job_id = stack.call(
        "POST",
        "/api/jobs/schedule",
        json={"spec_ref": PAGE_REPORT, "recurrence": {"cron": "0 3 * * *"}},
    ).json()["job_id"]
    mine, other = jobs_page(), jobs_page()
    mine.sign_in("research")
    other.sign_in("research")  # the same token, another sign-in: another CSRF token
    mine.open(f"/{job_id}")
    assert mine.csrf() != other.csrf()
    assert mine.post(f"/{job_id}/cancel", {}) == 403
    assert mine.post(f"/{job_id}/cancel", {"csrf": other.csrf()}) == 403
    res = mine.context.request.post(
        f"{stack.url}/jobs/{job_id}/cancel",
        form={"csrf": mine.csrf()},
        headers={"Origin": "https://attacker.example"},
    )
    assert res.status == 403
    assert _api_job(stack, job_id)["status"] == "scheduled"
    mine.page.get_by_role("link", name="Cancel…").click()
    expect(mine.page.get_by_role("heading", name=re.compile("^Cancel job"))).to_be_visible()
    mine.page.evaluate(  # a forged form: every CSRF field of the page replaced
        "document.querySelectorAll('input[name=csrf]').forEach(i => { i.value = 'forged'; })"
    )
    mine.page.get_by_role("button", name="Yes, cancel the job").click()
    expect(mine.page.get_by_role("alert")).to_contain_text("from another sign-in or page")
    mine.shot("csrf-refused")
    assert _api_job(stack, job_id)["status"] == "scheduled"

    # Signed out: the cookie is gone and the page asks for a token again.
    mine.open()
    mine.page.get_by_role("button", name="Sign out").click()
    expect(mine.page.get_by_role("status")).to_have_text("Signed out.")
    assert not [c for c in mine.context.cookies() if c["name"] == "quantos_jobs_session"]
    mine.open(f"/{job_id}")
    expect(mine.page.get_by_role("heading", name="Sign in")).to_be_visible()

    # A read-only token lists the jobs but is offered no action, and its POSTs are refused.
    ro = jobs_page()
    ro.sign_in("research_ro")
    assert job_id in ro.rows()
    expect(ro.page.get_by_role("link", name="Schedule a job")).to_have_count(0)
    expect(ro.page.get_by_role("link", name="Edit")).to_have_count(0)
    assert ro.post(f"/{job_id}/cancel", {"csrf": ro.csrf()}) == 403
    ro.open("/new")
    expect(ro.page.get_by_role("alert")).to_contain_text("lacks the 'submit' scope")
    ro.shot("read-only")
    assert _api_job(stack, job_id)["status"] == "scheduled"
    stack.call("DELETE", f"/api/jobs/{job_id}")


def test_jobs_page_another_team_sees_none_of_the_jobs_and_cannot_cancel_one_by_id(
    stack: Stack, jobs_page: Callable[[], JobsPage]
) -> None:
    research_ids = {
        row[0]
        for row in sqlite3.connect(stack.data_dir / "gateway.db").execute(
            "SELECT id FROM gateway_jobs WHERE team = 'research' AND NOT canceled"
        )
    }
    assert research_ids
    victim = min(research_ids)
    own = stack.call(
        "POST",
        "/api/jobs/schedule",
        json={"spec_ref": "exec_report", "recurrence": {"cron": "0 4 * * *"}},
        token="execution",
    ).json()["job_id"]
    ui = jobs_page()
    ui.sign_in("execution")
    assert ui.rows() == [own]  # its own job only
    content = ui.page.content()
    assert not [j for j in research_ids if j in content]
    ui.open(f"?search={PAGE_FLAKY}")
    expect(ui.page.locator("#no-jobs")).to_be_visible()
    csrf = ui.csrf()
    for path in (f"/{victim}", f"/{victim}/edit", f"/{victim}/cancel"):
        response = ui.page.goto(f"{stack.url}/jobs{path}")
        assert response is not None and response.status == 404, path
    expect(ui.page.get_by_role("alert")).to_have_text("no such job among your team's jobs")
    ui.shot("another-teams-job")
    assert ui.post(f"/{victim}/cancel", {"csrf": csrf}) == 404
    assert ui.post(f"/{victim}/retry", {"csrf": csrf}) == 404
    assert ui.post(f"/{victim}/edit", {"csrf": csrf, "description": "mine now"}) == 404
    victim_job = _api_job(stack, victim)
    assert victim_job["status"] != "canceled" and victim_job["description"] != "mine now"
    stack.call("DELETE", f"/api/jobs/{own}", "execution")


def test_jobs_page_retries_a_failed_job_and_links_to_its_runs_in_dagster(
    stack: Stack, jobs_page: Callable[[], JobsPage]
) -> None:
    """The one-off job of the first page test fired (the sensor) and failed."""
    [flaky_id] = [
        row[0]
        for row in sqlite3.connect(stack.data_dir / "gateway.db").execute(
            "SELECT id FROM gateway_jobs WHERE pipeline_id = ?", (PAGE_FLAKY,)
        )
    ]
    ui = jobs_page()
    ui.sign_in("research")
    ui.open(f"/{flaky_id}")
    _reload_until(ui.page, "#job [data-status]", "failed")
    failed_run = _api_job(stack, flaky_id)["last_run"]["run_id"]
    ui.shot("failed")
    # Retry is offered on the failed job only (the list has scheduled and canceled ones too).
    ui.open("?search=page_&sort=pipeline_id&order=asc")
    assert len(ui.rows()) > 1
    retry_rows = ui.page.locator("#jobs tbody tr").filter(
        has=ui.page.get_by_role("button", name="Retry")
    )
    expect(retry_rows).to_have_count(1)
    assert retry_rows.get_attribute("data-job-id") == flaky_id
    ui.shot("list-with-a-failed-job")  # the user guide's picture (docs/images/jobs-page.png)

    ui.open(f"/{flaky_id}")
    (stack.root / "page_flag").touch()  # the cause fixed
    ui.page.get_by_role("button", name="Retry").click()
    expect(ui.page.get_by_role("status")).to_contain_text("Retry launched")
    retried = _api_job(stack, flaky_id)
    assert retried["runs"] == 2 and retried["last_run"]["run_id"] != failed_run
    _reload_until(ui.page, "#job [data-status]", "succeeded")
    expect(ui.page.locator("#last-run")).to_contain_text(retried["last_run"]["run_id"])
    ui.shot("retried")

    link = ui.page.get_by_role("link", name="Runs in Dagster")
    href = link.get_attribute("href")
    assert href == (
        f"http://127.0.0.1:{stack.dagster.port}/runs?q%5B%5D=tag%3Aquantos%2Fjob_id%3D{flaky_id}"
    )
    # The Dagster UI greets a new instance with a community pop-up; "Skip" it if it shows.
    ui.page.add_locator_handler(
        ui.page.get_by_role("button", name="Skip"), lambda skip: skip.click()
    )
    link.click()
    for run_id in (failed_run, retried["last_run"]["run_id"]):
        expect(ui.page.get_by_text(run_id[:8], exact=True).first).to_be_visible(timeout=60_000)
    ui.shot("dagster-runs")


SENSOR_TICKS_QUERY = """
query($sel: SensorSelector!, $after: Float!) { sensorOrError(sensorSelector: $sel) {
  __typename ... on Sensor { sensorState { ticks(afterTimestamp: $after, limit: 10) { status } } }
} }
"""


def _wait_for_sensor_ticks(stack: Stack, after: float, count: int, timeout: float = 120) -> None:
    """Until the gateway_jobs sensor has finished `count` ticks started after `after` (every
    5 s here): what has not fired by then was not going to."""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": GATEWAY_JOBS_SENSOR,
    }
    deadline = time.monotonic() + timeout
    while True:
        found = stack.dagster.graphql(SENSOR_TICKS_QUERY, {"sel": selector, "after": after})
        sensor = found["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        ticks = sensor["sensorState"]["ticks"]
        if sum(tick["status"] != "STARTED" for tick in ticks) >= count:
            return
        assert time.monotonic() < deadline, f"{GATEWAY_JOBS_SENSOR} ticks since {after}: {ticks}"
        time.sleep(0.5)


# -- the sensor firing, last: its job (`due_soon`) was scheduled as the stack came up -------


def test_the_sensor_fires_a_calendar_job_through_dagster_once(
    stack: Stack, due_soon: tuple[datetime, dict[str, Any]]
) -> None:
    """The 24/7 calendar has a session every day: `at` a wall-clock time in the next minute
    or so (UTC) is today's fire time, and the only one for a day (the job: `due_soon`)."""
    soon, job = due_soon
    assert job["recurrence"]["calendar"] == "24/7" and job["recurrence"]["at"] == (
        soon.strftime("%H:%M")
    )
    assert job["next_fires"][0] == soon.isoformat()
    assert job["next_fires"][1] == (soon + timedelta(days=1)).isoformat()

    deadline = time.monotonic() + 300
    done = {"SUCCESS", "FAILURE", "CANCELED"}
    while (current := stack.call("GET", f"/api/jobs/{job['job_id']}").json())[
        "last_run"
    ] is None or (current["last_run"]["status"] not in done):
        assert time.monotonic() < deadline, current
        time.sleep(1)
    assert current["last_run"]["status"] == "SUCCESS", current
    _wait_for_sensor_ticks(stack, after=time.time(), count=2)  # the firing is not repeated
    current = stack.call("GET", f"/api/jobs/{job['job_id']}").json()
    assert current["runs"] == 1 and current["status"] == "scheduled", current
    assert current["next_fires"][0] == (soon + timedelta(days=1)).isoformat()
    runs = stack.dagster.graphql(
        "query R($t: [ExecutionTag!]) { runsOrError(filter: {tags: $t}) { ... on Runs { "
        "results { tags { key value } } } } }",
        {"t": [{"key": "quantos/job_id", "value": job["job_id"]}]},
    )["runsOrError"]["results"]
    [tags] = [{t["key"]: t["value"] for t in r["tags"]} for r in runs]
    assert tags["dagster/run_key"] == f"{job['job_id']}@{soon.strftime('%Y%m%dT%H%M%SZ')}"
    assert stack.call("DELETE", f"/api/jobs/{job['job_id']}").status_code == 200
