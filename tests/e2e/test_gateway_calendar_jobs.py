"""Calendar-aware scheduled jobs over the REST gateway (issue 21, point 1), against a real
`dagster dev` and `quantos gateway`.

What a client sees: `{"calendar": "XNYS", "at": "close+30m"}` instead of a cron, the job's next
fire times (`next_fires`, cron jobs too) equal to exchange-calendars' own session closes, a
recurrence switched between cron and calendar by PUT, one-line 422s naming `calendar` / `at`
with nothing stored, and a calendar job fired by the code location's `gateway_jobs` sensor
through Dagster, once.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gateway_stack import Stack, gateway_stack, one_node

pytestmark = pytest.mark.e2e

TEAMS = {
    "defaults": {"secrets_scopes": [], "max_concurrent_runs": 20, "submissions_per_minute": 600},
    "teams": {"research": {}, "execution": {}},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("calendar_jobs")
    specs = [one_node("cal_job", "research", "quantos_assets.tasks.noop:one_row")]
    tokens = [
        ("research", "research", "submit,read"),
        ("execution", "execution", "submit,read"),
    ]
    with gateway_stack(root, specs, TEAMS, tokens) as made:
        yield made


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


def test_the_sensor_fires_a_calendar_job_through_dagster_once(stack: Stack) -> None:
    """The 24/7 calendar has a session every day: `at` a wall-clock time a minute or two
    ahead (UTC) is today's fire time, and the only one for a day."""
    soon = (datetime.now(UTC) + timedelta(seconds=75)).replace(second=0, microsecond=0)
    soon += timedelta(minutes=1)
    at = soon.strftime("%H:%M")
    made = stack.call(
        "POST",
        "/api/jobs/schedule",
        json={
            "spec_ref": "cal_job",
            "description": "24/7 wall clock",
            "recurrence": {"calendar": "24/7", "at": at, "timezone": "UTC"},
        },
    )
    assert made.status_code == 201, made.text
    job = made.json()
    assert job["next_fires"][0] == soon.isoformat()
    assert job["next_fires"][1] == (soon + timedelta(days=1)).isoformat()

    deadline = time.monotonic() + 300
    done = {"SUCCESS", "FAILURE", "CANCELED"}
    while (current := stack.call("GET", f"/api/jobs/{job['job_id']}").json())[
        "last_run"
    ] is None or (current["last_run"]["status"] not in done):
        assert time.monotonic() < deadline, current
        time.sleep(3)
    assert current["last_run"]["status"] == "SUCCESS", current
    time.sleep(12)  # two more sensor ticks (every 5 s here): the firing is not repeated
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
