"""The per-minute quota window: one record per admitted request that counts, per team.

Submissions, retries, scheduled jobs and job firings all count against a team's
`submissions_per_minute` (deploy/teams.yaml). They are admitted by different processes (the
gateway's workers, the daemon's sensors), so the window lives in the gateway's store, and
taking a slot is one serialized transaction: count and insert under the team's lock, so no
number of workers together admit more than the limit.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from resources.sql_store import reading

WINDOW_SECONDS = 60.0

_metadata = sa.MetaData()
window_table = sa.Table(
    "quantos_quota_window",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("team", sa.String(200), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Index("ix_quantos_quota_window_team_at", "team", "at"),
)


def lock_team(conn: Connection, team: str) -> None:
    """Serialize a team's read-then-write transactions (quota windows)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(f"team:{team}".encode())}
        )
    # SQLite: the transaction began IMMEDIATE (resources/sql_store.py): already exclusive.


_LIVE = sa.and_(
    window_table.c.team == sa.bindparam("team"), window_table.c.at > sa.bindparam("since")
)
_COUNT = sa.select(sa.func.count()).select_from(window_table).where(_LIVE)
_INSERT = sa.insert(window_table)
_EXPIRED = sa.delete(window_table).where(
    window_table.c.team == sa.bindparam("team"), window_table.c.at <= sa.bindparam("since")
)
# Records that left the window are only counted out by the queries (`at > since`); deleting
# them is housekeeping, done at most this often per team and process.
PRUNE_EVERY_SECONDS = 10.0


class QuotaWindow:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _metadata.create_all(engine)
        self._pruned: dict[str, float] = {}

    def times(
        self, team: str, now: float | None = None, conn: Connection | None = None
    ) -> list[float]:
        """The team's admissions in the last WINDOW_SECONDS, oldest first."""
        now = time.time() if now is None else now
        query = (
            sa.select(window_table.c.at)
            .where(window_table.c.team == team, window_table.c.at > now - WINDOW_SECONDS)
            .order_by(window_table.c.at)
        )
        if conn is not None:
            return list(conn.execute(query).scalars())
        with reading(self.engine) as own:
            return list(own.execute(query).scalars())

    def wait(
        self, team: str, limit: int, now: float | None = None, conn: Connection | None = None
    ) -> int | None:
        """Seconds until the team's window holds fewer than `limit` admissions, or None when
        it does now: `quota_wait(times(...))`, counted in the database instead of reading
        every time of the window (thousands at a high limit, on every request)."""
        now = time.time() if now is None else now
        if conn is None:
            with reading(self.engine) as own:
                return self.wait(team, limit, now, own)
        count = conn.execute(_COUNT, {"team": team, "since": now - WINDOW_SECONDS}).scalar_one()
        if count < limit:
            return None
        live = sa.and_(window_table.c.team == team, window_table.c.at > now - WINDOW_SECONDS)
        if not limit:
            return retry_after((), 0, now)
        # the oldest of the newest `limit`: when it leaves the window there is room
        oldest: float = conn.execute(
            sa.select(window_table.c.at)
            .where(live)
            .order_by(window_table.c.at)
            .offset(count - limit)
            .limit(1)
        ).scalar_one()
        return max(1, math.ceil(oldest + WINDOW_SECONDS - now))

    def take(
        self,
        conn: Connection,
        team: str,
        limit: int,
        action: str,
        subject: str,
        now: float | None = None,
    ) -> int | None:
        """Record one admission inside the caller's transaction; if the window is full,
        record nothing and answer the seconds until a slot frees."""
        now = time.time() if now is None else now
        lock_team(conn, team)
        if now - self._pruned.get(team, 0.0) >= PRUNE_EVERY_SECONDS:
            conn.execute(_EXPIRED, {"team": team, "since": now - WINDOW_SECONDS})
            self._pruned[team] = now
        wait = self.wait(team, limit, now, conn)
        if wait is not None:
            return wait
        conn.execute(_INSERT, {"team": team, "at": now, "action": action, "subject": subject[:300]})
        return None

    def take_now(self, team: str, limit: int, action: str, subject: str) -> int | None:
        """`take` in a transaction of its own (an admission that stores nothing else here)."""
        with self.engine.begin() as conn:
            return self.take(conn, team, limit, action, subject)


def quota_wait(times: Sequence[float], limit: int, now: float) -> int | None:
    """`QuotaWindow.wait` over a list of the window's times, oldest first."""
    return retry_after(times, limit, now) if len(times) >= limit else None


def retry_after(times: Sequence[float], limit: int, now: float) -> int:
    """Seconds until the window holds fewer than `limit` admissions again."""
    oldest = times[len(times) - limit] if limit else now
    return max(1, math.ceil(oldest + WINDOW_SECONDS - now))
