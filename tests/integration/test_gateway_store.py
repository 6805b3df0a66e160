"""The gateway's submission store and the audit trail on SQLite and on the real PostgreSQL."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from postgres_db import PG_URL, fresh_database

from quantos_assets.gateway.submission_store import SubmissionStore
from resources.audit_log import AuditLog
from resources.sql_store import StoreURLError, store_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        with fresh_database("quantos_gateway_test") as db:
            yield PG_URL.format(db=db)


def _admit(store: SubmissionStore, sid: str, team: str = "research", now: float = 1000.0, per_minute: int = 3):  # type: ignore[no-untyped-def]
    return store.admit(
        submission_id=sid, team=team, actor="tok", pipeline_id="p", spec_sha256="a" * 64,
        params={"x": 1}, per_minute=per_minute, now=now,
    )


def test_per_minute_window_is_per_team_and_slides(store_url: str) -> None:
    store = SubmissionStore.from_url(store_url)
    assert all(_admit(store, f"s{i}", now=1000.0 + i).admitted for i in range(3))
    full = _admit(store, "s3", now=1010.0)
    assert not full.admitted and full.retry_after == 50  # the oldest (t=1000) leaves at t=1060
    assert _admit(store, "other-team", team="execution", now=1010.0).admitted
    assert _admit(store, "s4", now=1061.0).admitted
    again = _admit(store, "s0", now=1062.0)
    assert not again.admitted and again.existing is not None and again.existing.team == "research"


def test_concurrent_admissions_never_exceed_the_limit(store_url: str) -> None:
    store = SubmissionStore.from_url(store_url)
    results: list[bool] = []

    def worker(i: int) -> None:
        results.append(_admit(store, f"c{i}", now=5000.0, per_minute=5).admitted)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 5


def test_audit_chain_holds_under_concurrent_appends_and_catches_edits(store_url: str) -> None:
    audit = AuditLog(store_engine(store_url))

    def worker(i: int) -> None:
        for j in range(10):
            audit.append(actor=f"tok{i}", team="research", action="submit", subject=f"s{i}-{j}", decision="accepted", params={"j": j})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify()
    assert report.ok and report.records == 40
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), audit.engine.begin() as conn:
        conn.execute(sa.text("UPDATE quantos_audit SET decision = 'rejected' WHERE seq = 7"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), audit.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM quantos_audit WHERE seq = 7"))
    # Someone with DDL rights disables the guard and edits a record: the chain says where.
    with audit.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE quantos_audit DISABLE TRIGGER quantos_audit_no_change"))
        else:
            conn.execute(sa.text("DROP TRIGGER quantos_audit_no_update"))
        conn.execute(sa.text("UPDATE quantos_audit SET decision = 'rejected' WHERE seq = 7"))
    broken = audit.verify()
    assert not broken.ok and broken.first_bad_seq == 7 and "changed" in (broken.problem or "")


def test_a_store_url_of_another_kind_is_one_clear_error() -> None:
    with pytest.raises(StoreURLError, match="'mysql://x': expected sqlite"):
        store_engine("mysql://x")
