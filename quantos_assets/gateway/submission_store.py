"""Submissions the gateway accepted, their runs, and the per-team submission window.

Dagster's run storage holds the runs; this store holds what Dagster does not: which
team owns a submission (authorization), the spec hash and params it was accepted with
(idempotent re-submits), and the time of each submission (the per-minute quota, which
must hold across gateway workers, so it is counted here rather than in memory).

It is also the gateway's launch queue (an outbox): a submission is accepted once its row
is committed here with its request, `queued`; the dispatcher claims it (`launching`),
launches it in Dagster and records the run (`launched`), or the reason it could not
(`failed`). A gateway that stops between the two finds its queued and stale claimed rows
on start-up, so an accepted submission is never lost.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from quantos_assets.admission.quota_window import QuotaWindow, lock_team
from resources.sql_store import store_engine

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


QUEUED, LAUNCHING, LAUNCHED, FAILED, CANCELED = "queued", "launching", "launched", "failed", "canceled"
# A claim not renewed for this long belongs to a dispatcher that stopped: take it over.
STALE_CLAIM_SECONDS = 120.0


@dataclass(frozen=True)
class Admission:
    """The outcome of asking to record a submission."""

    admitted: bool
    existing: SubmissionRow | None = None  # same id already stored
    retry_after: int = 0  # seconds, when the team's window is full


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
        *,
        submission_id: str,
        team: str,
        actor: str,
        pipeline_id: str,
        spec_sha256: str,
        params: dict[str, Any],
        per_minute: int,
        request: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Admission:
        """Record the submission unless its id exists or the team's quota window is full.

        Count and insert happen in one serialized transaction, so N workers cannot
        together admit more than the limit (the window is shared with every other path
        that counts: retries, scheduled jobs and their firings).
        """
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            lock_team(conn, team)
            row = conn.execute(sa.select(submissions).where(submissions.c.id == submission_id)).first()
            if row is not None:
                return Admission(False, existing=SubmissionRow(**row._asdict()))
            wait = self.quota_window.take(conn, team, per_minute, "submit", submission_id, now)
            if wait is not None:
                return Admission(False, retry_after=wait)
            try:
                conn.execute(
                    sa.insert(submissions).values(
                        id=submission_id,
                        team=team,
                        actor=actor,
                        pipeline_id=pipeline_id,
                        spec_sha256=spec_sha256,
                        params=json.dumps(params, sort_keys=True),
                        created_at=now,
                        run_id=None,
                        state=QUEUED,
                        request=json.dumps(request, sort_keys=True) if request is not None else None,
                    )
                )
            except IntegrityError:  # another team's worker took the id in between
                row = conn.execute(sa.select(submissions).where(submissions.c.id == submission_id)).first()
                return Admission(False, existing=SubmissionRow(**row._asdict()) if row else None)
        return Admission(True)

    def set_run(self, submission_id: str, run_id: str, attempt: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(submissions)
                .where(submissions.c.id == submission_id)
                .values(run_id=run_id, state=LAUNCHED, error=None, claimed_at=None)
            )
            conn.execute(
                sa.insert(runs).values(submission_id=submission_id, run_id=run_id, attempt=attempt, created_at=time.time())
            )

    def discard(self, submission_id: str) -> None:
        """Forget a submission whose launch failed: nothing half-recorded stays."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(runs).where(runs.c.submission_id == submission_id))
            conn.execute(sa.delete(submissions).where(submissions.c.id == submission_id))

    # -- the launch queue ---------------------------------------------------------------------

    def claim(self, submission_id: str, now: float | None = None) -> tuple[SubmissionRow, bool] | None:
        """Take a queued (or stale launching) submission for launch: (row, taken_over), where
        taken_over means a stopped dispatcher had it (it may have launched already); None if
        it is not there to take."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(submissions).where(submissions.c.id == submission_id)).first()
            if row is None:
                return None
            stale = row.state == LAUNCHING and (row.claimed_at or 0) < now - STALE_CLAIM_SECONDS
            if row.state != QUEUED and not stale:
                return None
            # Conditional on what was read: of two dispatchers racing (PostgreSQL's READ
            # COMMITTED lets both read it queued), the second updates nothing.
            unchanged = submissions.c.state == row.state
            if row.claimed_at is None:
                unchanged = sa.and_(unchanged, submissions.c.claimed_at.is_(None))
            else:
                unchanged = sa.and_(unchanged, submissions.c.claimed_at == row.claimed_at)
            taken = conn.execute(
                sa.update(submissions)
                .where(submissions.c.id == submission_id, unchanged)
                .values(state=LAUNCHING, claimed_at=now)
            ).rowcount
            if taken != 1:
                return None
        return SubmissionRow(**{**row._asdict(), "state": LAUNCHING, "claimed_at": now}), stale

    def renew(self, submission_id: str) -> None:
        """Still working on it (retrying a launch while Dagster is unreachable)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(submissions)
                .where(submissions.c.id == submission_id, submissions.c.state == LAUNCHING)
                .values(claimed_at=time.time())
            )

    def fail(self, submission_id: str, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(submissions).where(submissions.c.id == submission_id).values(state=FAILED, error=error, claimed_at=None)
            )

    def requeue(self, submission_id: str) -> bool:
        """A failed launch queued again (retry); False if it was not a failed launch."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(submissions)
                .where(submissions.c.id == submission_id, submissions.c.state == FAILED, submissions.c.run_id.is_(None))
                .values(state=QUEUED, error=None, claimed_at=None)
            ).rowcount == 1

    def cancel_queued(self, submission_id: str) -> bool:
        """Cancel a submission not yet launched; False if a dispatcher has it or it ran."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(submissions)
                .where(submissions.c.id == submission_id, submissions.c.state.in_([QUEUED, FAILED]))
                .where(submissions.c.run_id.is_(None))
                .values(state=CANCELED, claimed_at=None)
            ).rowcount == 1

    def pending(self, now: float | None = None) -> list[str]:
        """Queued submissions and stale claims, oldest first (start-up recovery)."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(submissions.c.id)
                    .where(
                        sa.or_(
                            submissions.c.state == QUEUED,
                            sa.and_(submissions.c.state == LAUNCHING, submissions.c.claimed_at < now - STALE_CLAIM_SECONDS),
                        )
                    )
                    .order_by(submissions.c.created_at)
                ).scalars()
            )

    def unlaunched(self, team: str | None = None) -> int:
        """Accepted but not yet launched: counted with a team's active runs, and as backlog."""
        query = sa.select(sa.func.count()).select_from(submissions).where(submissions.c.state.in_([QUEUED, LAUNCHING]))
        if team is not None:
            query = query.where(submissions.c.team == team)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def get(self, submission_id: str) -> SubmissionRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(submissions).where(submissions.c.id == submission_id)).first()
        return SubmissionRow(**row._asdict()) if row else None

    def run_ids(self, submission_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(runs.c.run_id).where(runs.c.submission_id == submission_id).order_by(runs.c.attempt)
                ).scalars()
            )

    def list(self, team: str | None, limit: int = 100) -> list[SubmissionRow]:
        query = sa.select(submissions).order_by(submissions.c.created_at.desc()).limit(limit)
        if team is not None:
            query = query.where(submissions.c.team == team)
        with self.engine.connect() as conn:
            return [SubmissionRow(**r._asdict()) for r in conn.execute(query)]
