"""Asset-check results of the whole instance, read in two queries per scrape.

Dagster keeps one row per check execution in `asset_check_executions` (SQLite and
PostgreSQL alike). Its public reads (`get_asset_check_execution_history`,
`get_latest_asset_check_execution_by_key`) need the check keys, which only the code
location knows; the exporter must not load it. So this reads that table directly: one
GROUP BY for the execution counts of every check, one lookup of each check's latest
finished evaluation (for its severity and whether it fails now). The table is private to
Dagster: `tests/integration/test_run_metrics.py` shows it when an upgrade changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetCheckEvaluation, AssetKey, DagsterInstance, EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._serdes import deserialize_value

FINISHED = (
    AssetCheckExecutionRecordStatus.SUCCEEDED.value,
    AssetCheckExecutionRecordStatus.FAILED.value,
)


@dataclass(frozen=True)
class CheckResult:
    asset: AssetKey
    check: str
    severity: str  # ERROR (blocking when the check is) or WARN, of the latest evaluation
    failures: int  # failed evaluations since the instance began
    failing: bool  # the latest evaluation failed

    @property
    def pipeline(self) -> str:
        """Spec assets are keyed [pipeline_id, out]; dbt models [dbt, model]."""
        return self.asset.path[0]


def check_results(instance: DagsterInstance) -> list[CheckResult]:
    """Every check that has been evaluated at least once; none if the storage is not SQL."""
    import sqlalchemy as db

    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return []
    table = AssetCheckExecutionsTable
    key = (table.c.asset_key, table.c.check_name)
    with storage.index_connection() as conn:
        failures: dict[tuple[str, str], int] = {}
        for row in conn.execute(
            db.select(*key, db.func.count())
            .where(table.c.execution_status == AssetCheckExecutionRecordStatus.FAILED.value)
            .group_by(*key)
        ):
            failures[(str(row[0]), str(row[1]))] = int(row[2])
        latest_ids = (
            db.select(db.func.max(table.c.id).label("id"))
            .where(table.c.execution_status.in_(FINISHED))
            .group_by(*key)
            .subquery()
        )
        latest = conn.execute(
            db.select(*key, table.c.evaluation_event).where(
                table.c.id.in_(db.select(latest_ids.c.id))
            )
        ).all()
    results = []
    for row in latest:
        asset_key, check_name, raw = str(row[0]), str(row[1]), row[2]
        evaluation = _evaluation(raw)
        if evaluation is None:
            continue
        results.append(
            CheckResult(
                asset=AssetKey.from_db_string(asset_key) or AssetKey([asset_key]),
                check=check_name,
                severity=evaluation.severity.value,
                failures=failures.get((asset_key, check_name), 0),
                failing=not evaluation.passed,
            )
        )
    return sorted(results, key=lambda r: (r.asset.to_user_string(), r.check))


def _evaluation(raw: str | None) -> AssetCheckEvaluation | None:
    if not raw:
        return None
    entry = deserialize_value(raw, EventLogEntry)
    data = entry.dagster_event.event_specific_data if entry.dagster_event else None
    return data if isinstance(data, AssetCheckEvaluation) else None
