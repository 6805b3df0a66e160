"""The gateway's submission store and the audit trail on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from postgres_db import PG_URL, fresh_database

from quantos_assets.admission.quota_window import quota_wait
from quantos_assets.stores.submission_store import NewSubmission, SubmissionRow, SubmissionStore
from resources import sql_store
from resources.audit_key import AuditKeySource
from resources.audit_settings import AuditSettings
from resources.sql_store import StoreURLError, reading, store_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        with fresh_database("quantos_gateway_test") as db:
            yield PG_URL.format(db=db)


LEASE = 15.0


def _admit(
    store: SubmissionStore,
    sid: str,
    team: str = "research",
    now: float = 1000.0,
    per_minute: int = 3,
):
    return store.admit(
        NewSubmission(
            submission_id=sid,
            team=team,
            actor="tok",
            pipeline_id="p",
            spec_sha256="a" * 64,
            params={"x": 1},
        ),
        per_minute=per_minute,
        now=now,
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


def test_the_windows_wait_is_counted_as_the_list_of_its_times_would_say(store_url: str) -> None:
    """QuotaWindow.wait counts in the database; it answers what quota_wait over every time
    of the window answers, at every limit, including 0 and a full window."""
    window = SubmissionStore.from_url(store_url).quota_window
    for i, at in enumerate([1000.0, 1001.5, 1030.0, 1030.0, 1059.0]):
        with window.engine.begin() as conn:
            assert window.take(conn, "research", 100, "submit", f"s{i}", now=at) is None
    for now in (1030.5, 1059.5, 1061.0, 1089.9):
        times = window.times("research", now)
        for limit in range(7):
            assert window.wait("research", limit, now) == quota_wait(times, limit, now), (
                now,
                limit,
            )
    assert window.wait("execution", 1, 1030.5) is None
    assert window.wait("research", 5, 1030.5) == 30  # the oldest (t=1000) leaves at t=1060


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
    store = SubmissionStore.from_url(store_url)
    for sid in ("q1", "q2", "q3"):
        _admit(store, sid, now=1000.0, per_minute=10)
    assert store.pending(now=1001.0) == ["q1", "q2", "q3"] and store.unlaunched("research") == 3
    # The periodic sweep leaves fresh submissions to the gateway that accepted them.
    assert store.pending(now=1001.0, queued_for=15) == [] and store.pending(
        now=1016.0, queued_for=15
    ) == ["q1", "q2", "q3"]

    # Two gateways race for each submission: exactly one claim each.
    taken: list[str] = []

    def claim(sid: str, owner: str) -> None:
        if store.claim(sid, owner, LEASE, now=1002.0) is not None:
            taken.append(sid)

    threads = [
        threading.Thread(target=claim, args=(sid, owner))
        for sid in ("q1", "q2", "q3")
        for owner in ("A", "B")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == ["q1", "q2", "q3"]

    store.set_run("q1", "run-1", attempt=1)
    row = store.get("q2")
    assert row is not None and row.owner is not None
    assert store.fail(
        "q2", "job 'p' is not in code location 'quantos'", owner=row.owner, attempted=True
    )
    # q3's gateway stopped: nothing to take while its lease runs, then it is taken over, and says
    # so.
    assert store.pending(now=1003.0) == []
    assert store.pending(now=1002.0 + LEASE + 1) == ["q3"]
    claimed = store.claim("q3", "C", LEASE, now=1002.0 + LEASE + 1)
    assert claimed is not None and claimed.taken_over and claimed.row.owner == "C"
    assert store.unlaunched("research") == 1

    # A failed launch can be queued again or canceled; a launched one can be neither.
    row = store.get("q2")
    assert (
        row is not None
        and row.state == "failed"
        and "not in code location" in (row.error or "")
        and row.attempts == 1
    )
    assert store.launch_now("q2") == "queued" and (requeued := store.get("q2")) is not None
    assert requeued.state == "queued" and requeued.error is None and requeued.attempts == 1
    assert store.cancel_queued("q2") and store.claim("q2", "A", LEASE) is None
    assert store.launch_now("q2") is None  # canceled: a new submission_id is needed
    assert store.launch_now("q1") is None and not store.cancel_queued("q1")
    launched = store.get("q1")
    assert (
        launched is not None and launched.state == "launched" and store.run_ids("q1") == ["run-1"]
    )


def test_a_lease_lasts_while_its_heartbeat_renews_it_and_lapses_when_it_stops(
    store_url: str,
) -> None:
    """The gateway that claimed a submission keeps it as long as it beats (however long it
    waits for Dagster); once it stops beating, another gateway takes it over after one lease."""
    store = SubmissionStore.from_url(store_url)
    _admit(store, "w1", now=1000.0)
    first = store.claim("w1", "A", LEASE, now=1000.0)
    assert first is not None and not first.taken_over
    assert store.record_attempt(
        "w1", "A", "Dagster at http://127.0.0.1:9 is unreachable: ConnectError", 1000.5
    )

    for beat in range(1, 20):  # ten minutes of retries, a beat every 5 s (a third of a lease)
        now = 1000.0 + 5 * beat
        assert store.heartbeat("A", ["w1"], LEASE, now=now) == {"w1": 1000.5}
        assert store.claim("w1", "B", LEASE, now=now + LEASE - 0.1) is None
        assert store.pending(now=now + LEASE - 0.1) == []
    waiting = store.get("w1")
    assert waiting is not None and waiting.state == "launching" and waiting.owner == "A"
    assert (
        waiting.attempts == 1
        and "unreachable" in (waiting.last_error or "")
        and waiting.next_attempt_at == 1000.5
    )

    # A stops beating at t=1095 (killed): its lease ends at 1110.
    assert store.claim("w1", "B", LEASE, now=1109.9) is None
    assert store.pending(now=1110.1) == ["w1"]
    taken = store.claim("w1", "B", LEASE, now=1110.1)
    assert (
        taken is not None and taken.taken_over and taken.row.attempts == 1
    )  # B asks Dagster first
    # A, had it only been paused, learns that it lost the claim and may not launch or record.
    assert store.heartbeat("A", ["w1"], LEASE, now=1111.0) == {}
    assert not store.hold("w1", "A", LEASE, now=1111.0)
    assert not store.record_attempt("w1", "A", "late", 1112.0)
    assert not store.fail("w1", "late", owner="A")
    assert store.hold("w1", "B", LEASE, now=1111.0)


def test_concurrent_takeovers_of_a_lapsed_claim_give_it_to_one_gateway(store_url: str) -> None:
    """Eight gateways sweep at the same moment and all see the lapsed claim: one takes it
    (PostgreSQL READ COMMITTED included), so one launches it."""
    store = SubmissionStore.from_url(store_url)
    for round_ in range(5):
        sid = f"race{round_}"
        _admit(store, sid, now=2000.0, per_minute=100)
        assert store.claim(sid, "dead", LEASE, now=2000.0) is not None
        barrier = threading.Barrier(8)
        winners: list[str] = []

        def sweep(owner: str, sid: str, barrier: threading.Barrier, winners: list[str]) -> None:
            barrier.wait()
            if store.claim(sid, owner, LEASE, now=2000.0 + LEASE + 1) is not None:
                winners.append(owner)

        threads = [
            threading.Thread(target=sweep, args=(f"g{i}", sid, barrier, winners)) for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1, winners
        row = store.get(sid)
        assert (
            row is not None
            and row.owner == winners[0]
            and row.lease_until == 2000.0 + 2 * LEASE + 1
        )


def test_retry_and_cancel_of_a_submission_still_waiting(store_url: str) -> None:
    store = SubmissionStore.from_url(store_url)
    _admit(store, "s1", now=1000.0)
    assert store.launch_now("s1", now=1001.0) == "queued"  # queued: due now, any sweep takes it
    assert store.pending(now=1001.0, queued_for=LEASE) == ["s1"]
    assert store.claim("s1", "A", LEASE, now=1002.0) is not None
    assert store.record_attempt("s1", "A", "unreachable", next_attempt_at=1017.0)
    # A retry moves the next attempt to now: the holder sees it at its next heartbeat.
    assert store.launch_now("s1", now=1005.0) == "launching"
    assert store.heartbeat("A", ["s1"], LEASE, now=1006.0) == {"s1": 1005.0}
    # Canceled while waiting: the holder's next heartbeat no longer finds it.
    assert store.cancel_queued("s1")
    assert store.heartbeat("A", ["s1"], LEASE, now=1007.0) == {}
    # A launch call that was in flight gets its run recorded, and is told to terminate it.
    assert store.launched("s1", "run-late") == "canceled"
    row = store.get("s1")
    assert (
        row is not None
        and row.state == "canceled"
        and row.run_id == "run-late"
        and store.run_ids("s1") == ["run-late"]
    )

    # A stopping gateway lets its claims lapse at once.
    _admit(store, "s2", now=1000.0)
    assert store.claim("s2", "A", LEASE, now=1010.0) is not None
    assert store.release("A", ["s2"]) == 1
    assert store.pending(now=1010.5) == ["s2"]
    taken = store.claim("s2", "B", LEASE, now=1010.5)
    assert taken is not None and taken.taken_over
    assert store.launched("s2", "run-2") == "launched"


def test_a_store_made_before_the_launch_queue_gets_its_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = store_engine(url)
    with engine.begin() as conn:  # the table as the previous release created it, with a row
        conn.exec_driver_sql(
            "CREATE TABLE gateway_submissions (id VARCHAR(128) PRIMARY KEY, team VARCHAR(200) NOT "
            "NULL, actor VARCHAR(64) NOT NULL, pipeline_id VARCHAR(128) NOT NULL, spec_sha256 "
            "VARCHAR(64) NOT NULL, params TEXT NOT NULL, created_at FLOAT NOT NULL, run_id "
            "VARCHAR(64))"
        )
        conn.exec_driver_sql(
            "INSERT INTO gateway_submissions VALUES ('old', 'research', 't', 'p', 'x', '{}', 1.0, "
            "'run-0')"
        )
    store = SubmissionStore.from_url(url)
    old = store.get("old")
    assert old is not None and old.state == "launched" and old.run_id == "run-0"
    assert store.pending() == []


def test_audit_chain_holds_under_concurrent_appends_and_catches_edits(
    store_url: str, tmp_path: Path
) -> None:
    settings = AuditSettings(
        store_url, str(tmp_path / "audit.anchor"), AuditKeySource(path=tmp_path / "audit.key")
    )
    audit = settings.writer()

    def worker(i: int) -> None:
        for j in range(10):
            audit.append(
                actor=f"tok{i}",
                team="research",
                action="submit",
                subject=f"s{i}-{j}",
                decision="accepted",
                params={"j": j},
            )

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
            conn.execute(
                sa.text("ALTER TABLE quantos_audit DISABLE TRIGGER quantos_audit_no_change")
            )
        else:
            conn.execute(sa.text("DROP TRIGGER quantos_audit_no_update"))
        conn.execute(sa.text("UPDATE quantos_audit SET decision = 'rejected' WHERE seq = 7"))
    broken = audit.verify()
    assert not broken.ok and broken.first_bad_seq == 7 and "changed" in (broken.problem or "")


def test_a_submission_and_its_audit_record_commit_together(store_url: str, tmp_path: Path) -> None:
    """The gateway records an accepted submission and its audit record in one transaction:
    a record that cannot be written leaves no submission and no quota slot behind."""
    store = SubmissionStore.from_url(store_url)
    audit = AuditSettings(
        store_url, str(tmp_path / "audit.anchor"), AuditKeySource(path=tmp_path / "audit.key")
    ).writer(store.engine)

    def record(conn: sa.Connection, sid: str):
        return audit.record(
            conn, actor="tok", team="research", action="submit", subject=sid, decision="accepted"
        )

    ok = store.admit(
        NewSubmission(
            submission_id="s1",
            team="research",
            actor="tok",
            pipeline_id="p",
            spec_sha256="a" * 64,
            params={"x": 1},
        ),
        per_minute=2,
        now=1000.0,
        audit=lambda conn: record(conn, "s1"),
    )
    assert ok.admitted and ok.row == store.get("s1") and ok.audited is not None
    audit.anchor_head(ok.audited)

    def broken(conn: sa.Connection):
        record(conn, "s2")
        raise RuntimeError("the trail is not writable")

    with pytest.raises(RuntimeError, match="not writable"):
        store.admit(
            NewSubmission(
                submission_id="s2",
                team="research",
                actor="tok",
                pipeline_id="p",
                spec_sha256="a" * 64,
                params={"x": 1},
            ),
            per_minute=2,
            now=1001.0,
            audit=broken,
        )
    assert store.get("s2") is None  # nothing half-written: no row ...
    assert _admit(
        store, "s3", now=1002.0, per_minute=2
    ).admitted  # ... and the failed one took no slot
    report = audit.verify()
    assert report.ok and report.records == 1 and report.anchored_seq == 1, report


def test_a_read_neither_waits_for_nor_blocks_a_writer(tmp_path: Path) -> None:
    """SQLite: `reading()` is a snapshot without the write lock (the gateway reads several
    times per request), while every other transaction still takes the lock up front."""
    store = SubmissionStore.from_url(f"sqlite:///{tmp_path / 'gateway.db'}")
    assert _admit(store, "s0").admitted
    seen: list[SubmissionRow | None] = []
    with store.engine.begin() as writer:  # holds the write lock until the block ends
        writer.execute(sa.text("UPDATE gateway_submissions SET error = 'uncommitted'"))
        reader = threading.Thread(target=lambda: seen.append(store.get("s0")))
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "a read waited for the writer"
        row = seen[0]
        assert row is not None and row.error is None  # the last committed state
        with reading(store.engine) as conn:
            assert (
                conn.execute(sa.text("SELECT count(*) FROM gateway_submissions")).scalar_one() == 1
            )
    with store.engine.begin(), pytest.raises(sqlite3.OperationalError, match="locked"):
        # every other transaction takes SQLite's lock up front: no other connection may write
        sqlite3.connect(tmp_path / "gateway.db", timeout=0.1, isolation_level=None).execute(
            "BEGIN IMMEDIATE"
        )


def test_a_processs_writers_queue_and_every_end_of_a_transaction_lets_the_next_go(
    tmp_path: Path,
) -> None:
    """SQLite: the writers of one process wait on an in-process queue (woken as soon as the
    writer before them commits) before SQLite's lock, so the queue must be let go however a
    write transaction ends, and every engine on the file must share it."""
    path = tmp_path / "gateway.db"
    store = SubmissionStore.from_url(f"sqlite:///{path}")
    queue = sql_store._writer_queue(str(path))
    assert sql_store._writer_queue(str(tmp_path / "." / "gateway.db")) is queue
    with store.engine.begin() as conn:
        assert queue._holder is conn.connection.dbapi_connection
    assert queue._holder is None  # committed
    with pytest.raises(RuntimeError), store.engine.begin():
        raise RuntimeError("boom")
    assert queue._holder is None  # rolled back
    conn = store.engine.connect()
    conn.begin()
    conn.close()  # closed mid-transaction: rolled back
    assert queue._holder is None
    conn = store.engine.connect()
    conn.begin()
    conn.invalidate()  # the connection is closed, never rolled back
    assert queue._holder is None
    conn.close()
    with reading(store.engine):
        assert queue._holder is None  # a read never queues
    # many writers of two engines at once: every admission counted once, the queue free after
    other = SubmissionStore.from_url(f"sqlite:///{path}")
    threads = [
        threading.Thread(
            target=lambda i=i: [
                _admit(s, f"q{i}-{j}-{k}", per_minute=10_000)
                for j in range(10)
                for k, s in enumerate((store, other))
            ]
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert queue._holder is None
    with reading(store.engine) as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM gateway_submissions WHERE id LIKE 'q%'")
            ).scalar_one()
            == 160
        )


def test_a_store_url_of_another_kind_is_one_clear_error() -> None:
    with pytest.raises(StoreURLError, match="'mysql://x': expected sqlite"):
        store_engine("mysql://x")
