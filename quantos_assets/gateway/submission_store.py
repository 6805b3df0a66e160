"""Submissions the gateway accepted, their runs, and the per-team submission window.

Dagster's run storage holds the runs; this store holds what Dagster does not: which
team owns a submission (authorization), the spec hash and params it was accepted with
(idempotent re-submits), and the time of each submission (the per-minute quota, which
must hold across gateway workers, so it is counted here rather than in memory).
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from resources.sql_store import store_engine

WINDOW_SECONDS = 60.0

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
        now: float | None = None,
    ) -> Admission:
        """Record the submission unless its id exists or the team's last minute is full.

        Count and insert happen in one serialized transaction, so N workers cannot
        together admit more than the limit.
        """
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            self._lock_team(conn, team)
            row = conn.execute(sa.select(submissions).where(submissions.c.id == submission_id)).first()
            if row is not None:
                return Admission(False, existing=SubmissionRow(**row._asdict()))
            window = conn.execute(
                sa.select(submissions.c.created_at)
                .where(submissions.c.team == team, submissions.c.created_at > now - WINDOW_SECONDS)
                .order_by(submissions.c.created_at)
            ).scalars().all()
            if len(window) >= per_minute:
                oldest = window[len(window) - per_minute] if per_minute else now
                return Admission(False, retry_after=max(1, int(oldest + WINDOW_SECONDS - now + 0.999)))
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
                    )
                )
            except IntegrityError:  # another team's worker took the id in between
                row = conn.execute(sa.select(submissions).where(submissions.c.id == submission_id)).first()
                return Admission(False, existing=SubmissionRow(**row._asdict()) if row else None)
        return Admission(True)

    def set_run(self, submission_id: str, run_id: str, attempt: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(submissions).where(submissions.c.id == submission_id).values(run_id=run_id))
            conn.execute(
                sa.insert(runs).values(submission_id=submission_id, run_id=run_id, attempt=attempt, created_at=time.time())
            )

    def discard(self, submission_id: str) -> None:
        """Forget a submission whose launch failed: nothing half-recorded stays."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(runs).where(runs.c.submission_id == submission_id))
            conn.execute(sa.delete(submissions).where(submissions.c.id == submission_id))

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

    @staticmethod
    def _lock_team(conn: Connection, team: str) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(f"team:{team}".encode())})
        # SQLite: the transaction began IMMEDIATE (resources/sql_store.py): already exclusive.
