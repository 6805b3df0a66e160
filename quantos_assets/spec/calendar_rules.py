"""Rules across a spec's schedule, partitions, freshness and trigger blocks.

Each block is valid on its own (models.py); together they must agree on one
calendar, or a schedule could target a session that is not a partition key.
"""

from __future__ import annotations

from quantos_assets.spec.models import DagSpec


def check_calendar_blocks(spec: DagSpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    schedule, partitions, freshness = spec.schedule, spec.partitions, spec.freshness
    if schedule is not None and partitions is not None and schedule.calendar != partitions.calendar:
        problems.append(
            (
                "schedule.calendar",
                (
                    f"schedule runs on {schedule.calendar} but partitions are sessions of "
                    f"{partitions.calendar}: use one calendar for both"
                ),
            )
        )
    if freshness is not None:
        if schedule is None and partitions is None:
            problems.append(
                (
                    "freshness",
                    (
                        "freshness is counted in sessions: add a schedule or partitions block to "
                        "name the calendar"
                    ),
                )
            )
        if freshness.max_lag_sessions is None and freshness.deadline is None:
            problems.append(("freshness", "give max_lag_sessions, deadline or both"))
    if partitions is None:
        for i, node in enumerate(spec.nodes):
            if node.backfill is not None:
                problems.append(
                    (
                        f"nodes[{i}].backfill",
                        "backfill applies to session partitions: add a partitions block",
                    )
                )
    else:
        problems += [
            (
                f"triggers[{i}].arrivals",
                (
                    "a session-partitioned pipeline runs per session and an arrival names none: "
                    "trigger an unpartitioned pipeline, or use the schedule"
                ),
            )
            for i, trigger in enumerate(spec.triggers)
            if trigger.arrivals is not None
        ]
    return problems
