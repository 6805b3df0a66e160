"""Run tags: how a spec's SLO and a submission's runtime params reach Dagster.

Tags are the one channel that survives from submission to run storage, the
queue (dagster/priority, per-team concurrency) and run monitoring
(dagster/max_runtime), so everything a run needs to be traced back travels here.
"""

from __future__ import annotations

import json
import re

from quantos_assets.spec.models import DagSpec, Priority, RuntimeParams
from resources.run_tag_keys import (
    LABEL_PREFIX,
    TAG_COMPUTE_POOL,
    TAG_ENV,
    TAG_PIPELINE,
    TAG_QOS,
    TAG_REFS,
    TAG_SECRETS,
    TAG_SUBMISSION,
    TAG_TEAM,
    TAG_TTL,
    TAG_VERSION,
)

# QueuedRunCoordinator dequeues higher values first.
PRIORITY_VALUE = {Priority.low: -10, Priority.normal: 0, Priority.high: 10, Priority.critical: 20}


_TAG_VALUE = re.compile(r"[^A-Za-z0-9_.\-]")


def tag_value(value: object) -> str:
    """Dagster asset/op tag values allow a restricted alphabet and 63 chars."""
    return _TAG_VALUE.sub("_", str(value))[:63]


def spec_run_tags(spec: DagSpec) -> dict[str, str]:
    tags = {
        TAG_PIPELINE: spec.pipeline_id,
        "dagster/priority": str(PRIORITY_VALUE[spec.slo.priority]),
        TAG_QOS: spec.slo.qos.value,
    }
    if spec.slo.max_runtime is not None:
        tags["dagster/max_runtime"] = str(int(spec.slo.max_runtime))
    return tags


def runtime_run_tags(params: RuntimeParams) -> dict[str, str]:
    tags = {TAG_SUBMISSION: params.submission_id, TAG_ENV: params.env}
    for key, value in params.labels.items():
        tags[f"{LABEL_PREFIX}{key}"] = str(value)
    team = params.labels.get("team") or params.labels.get("owner")
    if team:
        tags[TAG_TEAM] = team
    if "version" in params.labels:
        tags[TAG_VERSION] = params.labels["version"]
    if params.secrets_scope:
        tags[TAG_SECRETS] = ",".join(params.secrets_scope)
    if params.priority is not None:
        tags["dagster/priority"] = str(PRIORITY_VALUE[params.priority])
    if params.affinity.compute_pool:
        tags[TAG_COMPUTE_POOL] = params.affinity.compute_pool
    if params.ttl_days is not None:
        tags[TAG_TTL] = str(params.ttl_days)
    if params.refs:
        shown = {out: ref.shown() for out, ref in sorted(params.refs.items())}
        tags[TAG_REFS] = json.dumps(shown, separators=(",", ":"))
    return tags
