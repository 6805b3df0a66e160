"""Submissions the gateway accepted, their runs, and the per-team submission window.

Dagster's run storage holds the runs; this store holds what Dagster does not: which
team owns a submission (authorization), the spec hash and params it was accepted with
(idempotent re-submits), and the time of each submission (the per-minute quota, which
must hold across gateway workers, so it is counted here rather than in memory).

It is also the gateway's launch queue (an outbox): a submission is accepted once its row
is committed here with its request, `queued`; a dispatcher claims it (`launching`),
launches it in Dagster and records the run (`launched`), or the reason it could not
(`failed`). A claim is a lease: it names the gateway process that holds it (`owner`) and
lasts until `lease_until`, which that process's heartbeat keeps pushing forward while it
works on the launch, retries included. A process that is gone stops renewing, so within a
lease every other gateway's sweep sees the claim expired and one of them takes it over
(after asking Dagster whether the old holder launched it already): an accepted submission
never waits on a gateway that is gone. Lease times are wall-clock seconds of the gateways'
hosts, whose clocks must agree to well within a lease (NTP).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from quantos_assets.admission.quota_window import QuotaWindow, lock_team
from resources.audit_log import AuditRecord
from resources.sql_store import reading, store_engine

_metadata = sa.MetaData()
submissions = sa.Table(
    "gateway_submissions",
    _metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("team", sa.String(200), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("pipeline_id", sa.String(128), nullable=False),
    sa.Column("spec_sha256", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    # The launch queue: queued -> launching -> launched | failed; canceled before launch.
    sa.Column("state", sa.String(16), nullable=False, server_default="launched", index=True),
    sa.Column("request", sa.Text, nullable=True),  # what the dispatcher launches (JSON)
    sa.Column("error", sa.Text, nullable=True),  # why a launch failed
    sa.Column("claimed_at", sa.Float, nullable=True),  # when a dispatcher last took it
    sa.Column("owner", sa.String(64), nullable=True),  # the gateway process holding the claim
    sa.Column("lease_until", sa.Float, nullable=True),  # the claim lapses then unless renewed
    sa.Column(
        "attempts", sa.Integer, nullable=False, server_default="0"
    ),  # launch calls that failed
    sa.Column("last_error", sa.Text, nullable=True),  # why the last one failed
    sa.Column("next_attempt_at", sa.Float, nullable=True),  # when the next one is due
)
runs = sa.Table(
    "gateway_runs",
    _metadata,
    sa.Column("submission_id", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class SubmissionRow:
    id: str
    team: str
    actor: str
    pipeline_id: str
    spec_sha256: str
    params: str
    created_at: float
    run_id: str | None
    state: str = "launched"
    request: str | None = None
    error: str | None = None
    claimed_at: float | None = None
    owner: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: float | None = None


QUEUED, LAUNCHING, LAUNCHED, FAILED, CANCELED = (
    "queued",
    "launching",
    "launched",
    "failed",
    "canceled",
)
# A claim made by a gateway of the release before leases (no `lease_until`) lapses once it
# has not been renewed for this long; that release renewed it at least every 15 s.
LEGACY_STALE_SECONDS = 120.0


@dataclass(frozen=True)
class Claim:
    """A submission taken for launch. `taken_over`: another gateway held it and is gone, so
    it may have launched the run already (ask Dagster before launching)."""

    row: SubmissionRow
    taken_over: bool


@dataclass(frozen=True)
class NewSubmission:
    """A submission as the gateway accepts it: what `admit` stores, and what a re-send of the
    same submission_id is compared with."""

    submission_id: str
    team: str
    actor: str
    pipeline_id: str
    spec_sha256: str
    params: dict[str, Any]  # what the audit record keeps of the request (stored as JSON)
    request: dict[str, Any] | None = None  # what the dispatcher launches (JSON)


@dataclass(frozen=True)
class Admission:
    """The outcome of asking to record a submission."""

    admitted: bool
    existing: SubmissionRow | None = None  # same id already stored
    retry_after: int = 0  # seconds, when the team's window is full
    row: SubmissionRow | None = None  # the row stored, when admitted
    audited: AuditRecord | None = None  # what `audit` recorded with it (anchor it after the commit)


# Built once: the submit path's statements (building and cache-keying a statement per call
# cost more than running it on SQLite).
_BY_ID = sa.select(submissions).where(submissions.c.id == sa.bindparam("id"))
_INSERTED = (
    "id",
    "team",
    "actor",
    "pipeline_id",
    "spec_sha256",
    "params",
    "created_at",
    "run_id",
    "state",
    "request",
)
_INSERT = sa.insert(submissions)
_UNLAUNCHED = (
    sa.select(sa.func.count())
    .select_from(submissions)
    .where(submissions.c.state.in_([QUEUED, LAUNCHING]))
)
_UNLAUNCHED_OF_TEAM = _UNLAUNCHED.where(submissions.c.team == sa.bindparam("team"))


class SubmissionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _metadata.create_all(engine)
        self._add_queue_columns()
        self.quota_window = QuotaWindow(engine)

    def _add_queue_columns(self) -> None:
        """Stores made before the launch queue get its columns (existing rows were launched)."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns("gateway_submissions")}
        added = {
            "state": "VARCHAR(16) NOT NULL DEFAULT 'launched'",
            "request": "TEXT",
            "error": "TEXT",
            "claimed_at": "FLOAT",
            "owner": "VARCHAR(64)",
            "lease_until": "FLOAT",
            "attempts": "INTEGER NOT NULL DEFAULT 0",
            "last_error": "TEXT",
            "next_attempt_at": "FLOAT",
        }
        with self.engine.begin() as conn:
            for name, ddl in added.items():
                if name not in have:
                    conn.exec_driver_sql(f"ALTER TABLE gateway_submissions ADD COLUMN {name} {ddl}")

    @classmethod
    def from_url(cls, url: str) -> SubmissionStore:
        return cls(store_engine(url))

    def admit(
        self,
        submission: NewSubmission,
        *,
        per_minute: int,
        now: float | None = None,
        audit: Callable[[Connection], AuditRecord] | None = None,
    ) -> Admission:
        """Record the submission unless its id exists or the team's quota window is full.

        Count and insert happen in one serialized transaction, so N workers cannot
        together admit more than the limit (the window is shared with every other path
        that counts: retries, scheduled jobs and their firings). `audit` writes the
        decision's record in the same transaction: one commit, and never a submission
        without its record.
        """
        now = time.time() if now is None else now
        sid, team = submission.submission_id, submission.team
        with self.engine.begin() as conn:
            lock_team(conn, team)
            row = conn.execute(_BY_ID, {"id": sid}).first()
            if row is not None:
                return Admission(False, existing=SubmissionRow(**row._asdict()))
            wait = self.quota_window.take(conn, team, per_minute, "submit", sid, now)
            if wait is not None:
                return Admission(False, retry_after=wait)
            stored = _queued_row(submission, now)
            try:
                conn.execute(_INSERT, {k: getattr(stored, k) for k in _INSERTED})
            except IntegrityError:  # another team's worker took the id in between
                row = conn.execute(_BY_ID, {"id": sid}).first()
                return Admission(False, existing=SubmissionRow(**row._asdict()) if row else None)
            audited = audit(conn) if audit is not None else None
        return Admission(True, row=stored, audited=audited)

    def set_run(self, submission_id: str, run_id: str, attempt: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(submissions)
                .where(submissions.c.id == submission_id)
                .values(run_id=run_id, state=LAUNCHED, error=None, **_RELEASED)
            )
            conn.execute(
                sa.insert(runs).values(
                    submission_id=submission_id,
                    run_id=run_id,
                    attempt=attempt,
                    created_at=time.time(),
                )
            )

    def discard(self, submission_id: str) -> None:
        """Forget a submission whose launch failed: nothing half-recorded stays."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(runs).where(runs.c.submission_id == submission_id))
            conn.execute(sa.delete(submissions).where(submissions.c.id == submission_id))

    # -- the launch queue ---------------------------------------------------------------------

    def claim(
        self, submission_id: str, owner: str, lease: float, now: float | None = None
    ) -> Claim | None:
        """Take a queued submission, or one whose claim expired, for launch by `owner` until
        now + `lease`; None if it is not there to take (launched, canceled, failed, or held)."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(submissions).where(submissions.c.id == submission_id)
            ).first()
            if row is None:
                return None
            # One conditional UPDATE: of two gateways racing (PostgreSQL's READ COMMITTED lets
            # both read the row claimable), the second re-checks the row the first committed
            # and updates nothing.
            taken = conn.execute(
                sa.update(submissions)
                .where(
                    submissions.c.id == submission_id,
                    submissions.c.state == row.state,
                    submissions.c.owner.is_not_distinct_from(row.owner),
                    _claimable(now),
                )
                .values(
                    state=LAUNCHING,
                    owner=owner,
                    lease_until=now + lease,
                    claimed_at=now,
                    next_attempt_at=None,
                )
            ).rowcount
            if taken != 1:
                return None
        claimed = {
            **row._asdict(),
            "state": LAUNCHING,
            "owner": owner,
            "lease_until": now + lease,
            "claimed_at": now,
            "next_attempt_at": None,
        }
        return Claim(SubmissionRow(**claimed), taken_over=row.state == LAUNCHING)

    def heartbeat(
        self, owner: str, submission_ids: Sequence[str], lease: float, now: float | None = None
    ) -> dict[str, float | None]:
        """Extend `owner`'s claims on these submissions; those still held, each with its
        `next_attempt_at` (moved earlier by a retry request). A missing id was canceled,
        launched or taken over: its launch must stop."""
        if not submission_ids:
            return {}
        now = time.time() if now is None else now
        held = sa.and_(
            submissions.c.id.in_(list(submission_ids)),
            submissions.c.owner == owner,
            submissions.c.state == LAUNCHING,
        )
        with self.engine.begin() as conn:
            conn.execute(sa.update(submissions).where(held).values(lease_until=now + lease))
            rows = conn.execute(
                sa.select(submissions.c.id, submissions.c.next_attempt_at).where(held)
            ).all()
        return {r.id: r.next_attempt_at for r in rows}

    def hold(self, submission_id: str, owner: str, lease: float, now: float | None = None) -> bool:
        """Before a launch call: is the claim still `owner`'s? (extended if so)."""
        now = time.time() if now is None else now
        return self.heartbeat(owner, [submission_id], lease, now) != {}

    def record_attempt(
        self, submission_id: str, owner: str, error: str, next_attempt_at: float
    ) -> bool:
        """A launch call failed and will be tried again at `next_attempt_at` (status shows both)."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    sa.update(submissions)
                    .where(
                        submissions.c.id == submission_id,
                        submissions.c.owner == owner,
                        submissions.c.state == LAUNCHING,
                    )
                    .values(
                        attempts=submissions.c.attempts + 1,
                        last_error=error,
                        next_attempt_at=next_attempt_at,
                    )
                ).rowcount
                == 1
            )

    def release(self, owner: str, submission_ids: Sequence[str]) -> int:
        """A gateway stopping: its claims lapse now, so a running gateway takes them over at
        its next sweep (still asking Dagster first) instead of after the lease."""
        if not submission_ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(submissions)
                .where(
                    submissions.c.id.in_(list(submission_ids)),
                    submissions.c.owner == owner,
                    submissions.c.state == LAUNCHING,
                )
                .values(lease_until=0.0)
            ).rowcount

    def launched(self, submission_id: str, run_id: str) -> str:
        """Record the run a dispatcher created. Its state after: `launched`, or `canceled`
        when the submission was canceled while the launch call was in flight (the caller
        then terminates the run; the run is recorded so status shows it)."""
        with self.engine.begin() as conn:
            state = conn.execute(
                sa.select(submissions.c.state)
                .where(submissions.c.id == submission_id)
                .with_for_update()
            ).scalar_one_or_none()
            after = CANCELED if state == CANCELED else LAUNCHED
            conn.execute(
                sa.update(submissions)
                .where(submissions.c.id == submission_id)
                .values(run_id=run_id, state=after, error=None, **_RELEASED)
            )
            conn.execute(
                sa.insert(runs).values(
                    submission_id=submission_id, run_id=run_id, attempt=1, created_at=time.time()
                )
            )
        return after

    def fail(
        self, submission_id: str, error: str, owner: str | None = None, attempted: bool = False
    ) -> bool:
        """The launch failed for good; `owner` given: only while that gateway holds the claim
        (a submission canceled meanwhile stays canceled)."""
        where = [submissions.c.id == submission_id]
        if owner is not None:
            where += [submissions.c.owner == owner, submissions.c.state == LAUNCHING]
        values: dict[str, Any] = {"state": FAILED, "error": error, "last_error": error, **_RELEASED}
        if attempted:
            values["attempts"] = submissions.c.attempts + 1
        with self.engine.begin() as conn:
            return conn.execute(sa.update(submissions).where(*where).values(**values)).rowcount == 1

    def launch_now(self, submission_id: str, now: float | None = None) -> str | None:
        """A retry of a submission that has no run: a failed launch is queued again; one still
        waiting (queued, claimed by a gateway retrying against an unreachable Dagster, or
        held by a gateway that is gone) is due now. Its state, or None when it has a run or
        was canceled."""
        now = time.time() if now is None else now
        unlaunched = sa.and_(submissions.c.id == submission_id, submissions.c.run_id.is_(None))
        with self.engine.begin() as conn:
            if (
                conn.execute(
                    sa.update(submissions)
                    .where(unlaunched, submissions.c.state == FAILED)
                    .values(state=QUEUED, error=None, **{**_RELEASED, "next_attempt_at": now})
                ).rowcount
                == 1
            ):
                return QUEUED
            state = conn.execute(
                sa.select(submissions.c.state).where(
                    unlaunched, submissions.c.state.in_([QUEUED, LAUNCHING])
                )
            ).scalar_one_or_none()
            if state is None:
                return None
            conn.execute(sa.update(submissions).where(unlaunched).values(next_attempt_at=now))
            return str(state)

    def cancel_queued(self, submission_id: str) -> bool:
        """Cancel a submission not yet launched (a gateway retrying its launch stops at its
        next heartbeat; one whose launch call is in flight terminates the run it gets);
        False if it has a run or was canceled already."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    sa.update(submissions)
                    .where(
                        submissions.c.id == submission_id,
                        submissions.c.state.in_([QUEUED, LAUNCHING, FAILED]),
                    )
                    .where(submissions.c.run_id.is_(None))
                    .values(state=CANCELED, **_RELEASED)
                ).rowcount
                == 1
            )

    def pending(self, now: float | None = None, queued_for: float = 0.0) -> list[str]:
        """What a gateway should try to claim, oldest first: submissions queued for at least
        `queued_for` seconds (or asked to launch now) and claims that expired. At start-up
        every queued one; the periodic sweep leaves the fresh ones to the gateway that
        accepted them."""
        now = time.time() if now is None else now
        queued = sa.and_(
            submissions.c.state == QUEUED,
            sa.or_(
                submissions.c.created_at <= now - queued_for, submissions.c.next_attempt_at <= now
            ),
        )
        with reading(self.engine) as conn:
            return list(
                conn.execute(
                    sa.select(submissions.c.id)
                    .where(sa.or_(queued, sa.and_(submissions.c.state == LAUNCHING, _expired(now))))
                    .order_by(submissions.c.created_at)
                ).scalars()
            )

    def unlaunched(self, team: str | None = None, conn: Connection | None = None) -> int:
        """Accepted but not yet launched: counted with a team's active runs, and as backlog."""
        if conn is None:
            with reading(self.engine) as own:
                return self.unlaunched(team, own)
        if team is None:
            return int(conn.execute(_UNLAUNCHED).scalar_one())
        return int(conn.execute(_UNLAUNCHED_OF_TEAM, {"team": team}).scalar_one())

    def get(self, submission_id: str, conn: Connection | None = None) -> SubmissionRow | None:
        if conn is None:
            with reading(self.engine) as own:
                return self.get(submission_id, own)
        row = conn.execute(_BY_ID, {"id": submission_id}).first()
        return SubmissionRow(**row._asdict()) if row else None

    def run_ids(self, submission_id: str) -> list[str]:
        with reading(self.engine) as conn:
            return list(
                conn.execute(
                    sa.select(runs.c.run_id)
                    .where(runs.c.submission_id == submission_id)
                    .order_by(runs.c.attempt)
                ).scalars()
            )

    def list(self, team: str | None, limit: int = 100) -> list[SubmissionRow]:
        query = sa.select(submissions).order_by(submissions.c.created_at.desc()).limit(limit)
        if team is not None:
            query = query.where(submissions.c.team == team)
        with reading(self.engine) as conn:
            return [SubmissionRow(**r._asdict()) for r in conn.execute(query)]


def _queued_row(submission: NewSubmission, now: float) -> SubmissionRow:
    """The row `admit` inserts: queued for the dispatcher, params and request as JSON."""
    request = submission.request
    return SubmissionRow(
        id=submission.submission_id,
        team=submission.team,
        actor=submission.actor,
        pipeline_id=submission.pipeline_id,
        spec_sha256=submission.spec_sha256,
        params=json.dumps(submission.params, sort_keys=True),
        created_at=now,
        run_id=None,
        state=QUEUED,
        request=json.dumps(request, sort_keys=True) if request is not None else None,
    )


# Columns of a claim, cleared once the submission leaves the launch queue or is queued again.
_RELEASED: dict[str, Any] = {
    "owner": None,
    "lease_until": None,
    "claimed_at": None,
    "next_attempt_at": None,
}


def _expired(now: float) -> sa.ColumnElement[bool]:
    """A claim whose lease lapsed (or, made before leases, not renewed for LEGACY_STALE_SECONDS)."""
    return sa.or_(
        submissions.c.lease_until < now,
        sa.and_(
            submissions.c.lease_until.is_(None),
            sa.func.coalesce(submissions.c.claimed_at, 0.0) < now - LEGACY_STALE_SECONDS,
        ),
    )


def _claimable(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(
        submissions.c.state == QUEUED, sa.and_(submissions.c.state == LAUNCHING, _expired(now))
    )
