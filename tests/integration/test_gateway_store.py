"""The gateway's submission store and the audit trail on SQLite and on the real PostgreSQL."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from postgres_db import PG_URL, fresh_database

from quantos_assets.gateway.submission_store import SubmissionStore
from resources.audit_key import AuditKeySource
from resources.audit_settings import AuditSettings
from resources.sql_store import StoreURLError, store_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        with fresh_database("quantos_gateway_test") as db:
            yield PG_URL.format(db=db)


def _admit(store: SubmissionStore, sid: str, team: str = "research", now: float = 1000.0, per_minute: int = 3):
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


def test_launch_queue_claims_once_and_recovers_what_a_stopped_gateway_held(store_url: str) -> None:
    from quantos_assets.gateway.submission_store import STALE_CLAIM_SECONDS

    store = SubmissionStore.from_url(store_url)
    for sid in ("q1", "q2", "q3"):
        _admit(store, sid, now=1000.0, per_minute=10)
    assert store.pending(now=1001.0) == ["q1", "q2", "q3"] and store.unlaunched("research") == 3

    # Two dispatchers race for each submission: exactly one claim each.
    taken: list[str] = []

    def claim(sid: str) -> None:
        if store.claim(sid, now=1002.0) is not None:
            taken.append(sid)

    threads = [threading.Thread(target=claim, args=(sid,)) for sid in ("q1", "q1", "q2", "q2", "q3", "q3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == ["q1", "q2", "q3"]

    store.set_run("q1", "run-1", attempt=1)
    store.fail("q2", "job 'p' is not in code location 'quantos'")
    # q3's dispatcher stopped: its claim is taken over once stale, and says so.
    assert store.pending(now=1003.0) == []
    assert store.pending(now=1002.0 + STALE_CLAIM_SECONDS + 1) == ["q3"]
    claimed = store.claim("q3", now=1002.0 + STALE_CLAIM_SECONDS + 1)
    assert claimed is not None and claimed[1] is True
    assert store.unlaunched("research") == 1

    # A failed launch can be queued again or canceled; a launched one can be neither.
    row = store.get("q2")
    assert row is not None and row.state == "failed" and "not in code location" in (row.error or "")
    assert store.requeue("q2") and (requeued := store.get("q2")) is not None and requeued.state == "queued"
    assert store.cancel_queued("q2") and store.claim("q2") is None
    assert not store.requeue("q1") and not store.cancel_queued("q1")
    launched = store.get("q1")
    assert launched is not None and launched.state == "launched" and store.run_ids("q1") == ["run-1"]


def test_a_store_made_before_the_launch_queue_gets_its_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = store_engine(url)
    with engine.begin() as conn:  # the table as the previous release created it, with a row
        conn.exec_driver_sql(
            "CREATE TABLE gateway_submissions (id VARCHAR(128) PRIMARY KEY, team VARCHAR(200) NOT NULL, "
            "actor VARCHAR(64) NOT NULL, pipeline_id VARCHAR(128) NOT NULL, spec_sha256 VARCHAR(64) NOT NULL, "
            "params TEXT NOT NULL, created_at FLOAT NOT NULL, run_id VARCHAR(64))"
        )
        conn.exec_driver_sql("INSERT INTO gateway_submissions VALUES ('old', 'research', 't', 'p', 'x', '{}', 1.0, 'run-0')")
    store = SubmissionStore.from_url(url)
    old = store.get("old")
    assert old is not None and old.state == "launched" and old.run_id == "run-0"
    assert store.pending() == []


def test_audit_chain_holds_under_concurrent_appends_and_catches_edits(store_url: str, tmp_path: Path) -> None:
    settings = AuditSettings(store_url, str(tmp_path / "audit.anchor"), AuditKeySource(path=tmp_path / "audit.key"))
    audit = settings.writer()

    def worker(i: int) -> None:
        for j in range(10):
            audit.append(actor=f"tok{i}", team="research", action="submit", subject=f"s{i}-{j}", decision="accepted", params={"j": j})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify()
    assert report.ok and report.records == 40 and report.anchored_seq == 40, report  # no head lost
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
