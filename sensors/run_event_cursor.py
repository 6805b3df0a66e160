"""A sensor's position in the event logs of the runs it follows (OpenLineage, step notifications).

Why per run: on run-sharded SQLite (the embedded default) storage ids are per run, so one
global event cursor would be wrong there; per-run positions work on Postgres alike. Finished
runs are kept a while, so a late re-read of their record does not replay them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dagster import DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.event_api import EventLogCursor

ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
SLACK_S = 60.0  # re-read runs updated shortly before the last tick: clocks and commits lag
KEEP_FINISHED_S = 600.0


@dataclass
class RunEventCursor:
    since: float
    runs: dict[str, list[Any]] = field(
        default_factory=dict
    )  # run_id -> [event cursor, finished_at]

    @classmethod
    def parse(cls, raw: str) -> RunEventCursor:
        data = json.loads(raw)
        return cls(data["since"], data.get("runs", {}))

    def dump(self) -> str:
        return json.dumps({"since": self.since, "runs": self.runs}, sort_keys=True)

    def position(self, run_id: str) -> str | None:
        """Where to read this run's events from; None also for a run already done with."""
        return self.runs.get(run_id, [None, None])[0]

    def is_done(self, run_id: str) -> bool:
        return self.runs.get(run_id, [None, None])[1] is not None

    def hold(self, run_id: str, position: str | None) -> None:
        """Stop at `position` for now (undelivered event, or the tick's budget is spent)."""
        self.runs[run_id] = [position, None]

    def advance(self, run: DagsterRun, position: str | None, now: float) -> None:
        """Every event of `run` up to `position` is handled; a finished run is then done."""
        self.runs[run.run_id] = [position, now if run.is_finished else None]

    def close_tick(self, now: float) -> str:
        """Forget runs finished long ago; the next tick re-reads runs updated since `now`."""
        self.runs = {
            k: v for k, v in self.runs.items() if v[1] is None or now - v[1] < KEEP_FINISHED_S
        }
        self.since = now
        return self.dump()

    def runs_to_follow(
        self, instance: Any, follows: Callable[[DagsterRun], bool]
    ) -> list[DagsterRun]:
        """Runs in progress, and runs updated since the last tick (they may have just
        finished), oldest first, so events go out in the order the runs were started."""
        active = instance.get_run_records(RunsFilter(statuses=ACTIVE))
        recent = instance.get_run_records(
            RunsFilter(updated_after=datetime.fromtimestamp(self.since - SLACK_S, UTC))
        )
        seen: dict[str, Any] = {}
        for record in [*active, *recent]:
            if follows(record.dagster_run):
                seen.setdefault(record.dagster_run.run_id, record)
        return [
            r.dagster_run
            for r in sorted(seen.values(), key=lambda r: (r.create_timestamp, r.storage_id))
        ]


def storage_position(storage_id: int) -> str:
    return EventLogCursor.from_storage_id(storage_id).to_string()
