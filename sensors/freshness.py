"""The pipeline's calendar freshness, re-judged every minute and recorded as check results.

The verdict is written (as an asset check evaluation, no run launched) only when it
changes: fresh <-> stale, or a new session closes or lands. The cursor holds the last
verdict per asset, so a restarted daemon does not repeat itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    SensorDefinition,
    SensorResult,
    SkipReason,
    sensor,
)

from quantos_assets.freshness_checks import check_evaluation, freshness_calendar, freshness_verdicts
from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.spec.derived_names import freshness_name

INTERVAL_SECONDS = 60


def build_freshness_sensor(
    pipeline: PipelineDefs, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> SensorDefinition:
    spec = pipeline.spec
    keys: list[AssetKey] = [check.asset_key for c in pipeline.checks for check in c.check_keys]

    @sensor(
        name=freshness_name(spec.pipeline_id),
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Judges {spec.pipeline_id}'s freshness on the {freshness_calendar(spec)} calendar"
        ),
    )
    def _freshness(context):  # context unannotated: see [tool.mypy]
        previous = json.loads(context.cursor) if context.cursor else {}
        verdicts = freshness_verdicts(context.instance, spec, keys, clock())
        current = {k.to_user_string(): list(v.key()) for k, v in verdicts.items()}
        changed = [
            k for k in verdicts if previous.get(k.to_user_string()) != current[k.to_user_string()]
        ]
        stale = sum(1 for v in verdicts.values() if not v.fresh)
        if not changed:
            return SkipReason(f"no change: {stale} of {len(verdicts)} assets stale")
        return SensorResult(
            asset_events=[check_evaluation(k, verdicts[k]) for k in changed],
            cursor=json.dumps(current, sort_keys=True),
        )

    return _freshness
