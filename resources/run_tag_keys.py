"""The names of the run tags every layer reads or writes, in the bottom layer so that an IO
manager, a runner, a sensor and the gateway all import the one spelling (a tag written
under one name and read under another is a silent miss, not an error).

What the tags carry and how they are built from a spec and a submission is
quantos_assets/run_tags.py.
"""

from __future__ import annotations

TAG_PIPELINE = "quantos/pipeline_id"
TAG_SUBMISSION = "quantos/submission_id"
TAG_ENV = "quantos/env"
TAG_TEAM = "quantos/team"
TAG_VERSION = "quantos/version"
TAG_POOL = "quantos/pool"
TAG_KIND = "quantos/kind"
TAG_NODE = "quantos/node_id"
TAG_SECRETS = "quantos/secrets_scope"
TAG_COMPUTE_POOL = "quantos/compute_pool"
TAG_TTL = "quantos/ttl_days"
# Set by lake maintenance once it removed what a run past its ttl_days wrote (the date).
TAG_TTL_EXPIRED = "quantos/ttl_expired"
# Inputs pinned in time: JSON {out: "snapshot:<id>" | "as_of:<ISO 8601>"} (RuntimeParams.refs)
TAG_REFS = "quantos/refs"
# A run launched by a scheduled gateway job (the jobs API and sensors/gateway_jobs.py).
TAG_JOB = "quantos/job_id"
# The sha256 of the spec a gateway submission or scheduled job ran.
TAG_SPEC_SHA256 = "quantos/spec_sha256"
# A run started by a session schedule carries its session date.
TAG_SESSION = "quantos/session"
# A run started by the Kafka lag sensor: the lag seen, and on which topic and group.
TAG_LAG = "quantos/kafka_lag"
TAG_TOPIC = "quantos/kafka_topic"
TAG_GROUP = "quantos/kafka_group"
# A run started by a Kafka submission: the message's topic/partition/offset.
TAG_KAFKA_MESSAGE = "quantos/kafka_message"
# A run started by a data-arrival trigger: the object's URI and its version (S3: the ETag;
# a local file: mtime_ns-size). Every node sees them (python_task: the Pipes extra `arrival`).
TAG_ARRIVAL_URI = "quantos/arrival_uri"
TAG_ARRIVAL_VERSION = "quantos/arrival_version"
# The spec's qos (quantos_assets/run_tags.py), read by the run queue and placement.
TAG_QOS = "quantos/qos"
# The pid of a run's worker on the embedded default (read by the warm launcher to terminate
# and health-check the run from any process on the host).
WORKER_PID_TAG = "quantos/run_worker_pid"
# Submission labels become `quantos/label.<key>` run tags.
LABEL_PREFIX = "quantos/label."
# W3C trace context (a `traceparent` value) of the span a run's span hangs under: the
# gateway's submission span. Absent on runs that start their own trace (Kafka, schedules, UI).
TAG_TRACEPARENT = "quantos/traceparent"
# The run's own span, written by the run worker before the run starts: every step's span hangs
# under it, whichever process (forkserver child, pod) the step runs in.
TAG_RUN_TRACEPARENT = "quantos/run_traceparent"
