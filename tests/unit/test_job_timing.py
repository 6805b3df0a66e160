"""Scheduled jobs: the bounds the API states, and a store one bad row cannot break (issue 16, 7)."""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster._utils.schedules import is_valid_cron_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantos_assets.stores.job_store import JobStore, NewJob
from quantos_assets.stores.job_timing import (
    CRON_FIELDS,
    CRON_PATTERN,
    RecurrenceError,
    check_cron,
    check_execution_time,
)

_FEBRUARY = {"2", "02", "FEB", "feb"}


# field by field: hypothesis draws from five small regexes far faster than from their join
_CRONS = st.tuples(*(st.from_regex(f"^{f}$", fullmatch=True) for f in CRON_FIELDS)).map(" ".join)


@settings(max_examples=100, suppress_health_check=list(HealthCheck), database=None, deadline=None)
@given(_CRONS)
def test_every_cron_the_schema_allows_is_one_dagster_accepts(cron: str) -> None:
    """The OpenAPI pattern is a subset of Dagster's cron language: a string matching it is
    refused only for a date that never exists (30 February)."""
    assert re.fullmatch(CRON_PATTERN, cron)
    fields = cron.split()
    if fields[2] in {"30", "31"} and fields[3] in _FEBRUARY:
        return
    assert is_valid_cron_string(cron), cron


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("", "not a valid cron"),
        ("@daily", "not a valid cron"),
        ("0 0 30 2 *", "not a valid cron"),
        ("0 0 31 4 *", "never fires"),
    ],
)
def test_crons_refused_with_the_reason(cron: str, why: str) -> None:
    with pytest.raises(RecurrenceError, match=why):
        check_cron(cron)


def test_execution_times_outside_the_window_are_refused_naming_the_time() -> None:
    with pytest.raises(ValueError, match=r"9999-12-31T23:59:59-14:00 is more than 10 years ahead"):
        check_execution_time(datetime.fromisoformat("9999-12-31T23:59:59-14:00"))
    with pytest.raises(ValueError, match="is before 2000-01-01"):
        check_execution_time(datetime(1999, 12, 31, 23, 59, tzinfo=UTC))
    with pytest.raises(ValueError, match="give a timezone offset"):
        check_execution_time(datetime(2030, 1, 1))
    soon = datetime.now(UTC) + timedelta(days=365 * 9)
    assert check_execution_time(soon) == soon


def test_rows_that_cannot_be_shown_come_back_marked_and_the_others_intact(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    store = JobStore.from_url(f"sqlite:///{db}")
    good = store.create(
        NewJob(
            team="research",
            actor="t",
            type="pipeline",
            pipeline_id="p",
            spec_sha256="a" * 64,
            runtime_params={},
            nodes=[],
            description="",
            execution_time=time.time() + 60,
            cron="30 16 * * 1-5",
            timezone="UTC",
        )
    )
    now = time.time()
    bad = [  # as an older version or a hand edit could have left them
        ("job-year10000", 253402350000.0, "{}", "[]", None, "UTC"),
        ("job-badjson", now, "{not json", "[]", None, "UTC"),
        ("job-badcron", now, "{}", "[]", "0 0 31 4 *", "UTC"),
        ("job-badzone", now, "{}", "[]", "0 0 * * *", "Mars/Olympus"),
    ]
    with sqlite3.connect(db) as conn:
        for job_id, at, params, nodes, cron, zone in bad:
            conn.execute(
                "INSERT INTO gateway_jobs (id, team, actor, type, pipeline_id, spec_sha256, "
                "runtime_params, nodes, "
                "description, execution_time, cron, timezone, canceled, created_at, updated_at) "
                "VALUES (?, 'research', 't', 'pipeline', 'p', ?, ?, ?, '', ?, ?, ?, 0, ?, ?)",
                (job_id, "a" * 64, params, nodes, at, cron, zone, now, now),
            )
    jobs = {j.id: j for j in store.list("research")}
    assert jobs[good.id].problem is None
    assert (
        jobs["job-year10000"].problem
        == "execution_time 253402350000.0 is not a time (epoch seconds)"
    )
    assert jobs["job-year10000"].execution_time_iso() == "253402350000.0"
    assert (
        jobs["job-badjson"].problem == "runtime_params is not a JSON dict"
        and jobs["job-badjson"].runtime_params == {}
    )
    assert "never fires" in (jobs["job-badcron"].problem or "")
    assert jobs["job-badzone"].problem == "unknown timezone 'Mars/Olympus'"
