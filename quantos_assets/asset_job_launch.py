"""Prototype switch: pipelines launched as asset selections of the location's asset job.

Each pipeline's own asset job costs every reload one job snapshot fetched over gRPC by the
webserver and again by the daemon (~54 KB per 5-node job), so a reload grows with the jobs of
its location. With QUANTOS_PROTO_ASSET_JOB_LAUNCH=1 (set by `bench/registry_scale.py
--asset-job` only) unscheduled pipelines add no job and the gateway launches Dagster's
implicit asset job with the pipeline's assets and tags instead. Not a supported setting: the
status, logs, notification and lineage paths still read a run's pipeline from its job name
(docs/decisions.md lists what a real change needs).
"""

from __future__ import annotations

import os

from quantos_assets.spec.models import EXTERNAL_KINDS, DagSpec

ASSET_JOB_LAUNCH_ENV = "QUANTOS_PROTO_ASSET_JOB_LAUNCH"
IMPLICIT_ASSET_JOB = "__ASSET_JOB"


def asset_job_launch() -> bool:
    return os.environ.get(ASSET_JOB_LAUNCH_ENV) == "1"


def launch_asset_keys(spec: DagSpec) -> list[list[str]]:
    """Every asset a run of the whole pipeline materializes (its runnable nodes' outs, or
    the node's own name for a node without outs)."""
    return [
        [spec.pipeline_id, out]
        for node in spec.nodes
        if node.kind not in EXTERNAL_KINDS
        for out in (node.outs or [node.id])
    ]
