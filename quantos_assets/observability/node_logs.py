"""Keyed JSON log lines of every run and node event, for Loki and `quantos logs`.

Seed 000 §6 wants logs indexed by submission_id, pipeline_id and node_id. Dagster's own
console log is one human line per event with none of those keys, and its
`json_console_logger` (a job logger) is used only by runs whose run config names it, so
runs launched from the UI, sensors or schedules would miss it (docs/decisions.md).

So the keyed lines come from an instance-level log handler, which Dagster attaches to every
run's log manager in every process (run worker and each step process) when `dagster.yaml`
names it:

    python_logs:
      dagster_handler_config:
        handlers:
          quantos_json:
            class: quantos_assets.observability.node_logs.NodeLogHandler

It writes one JSON object per event to the process's stdout. A step's stdout is what
Dagster's compute log manager captures, so each node's captured stdout in the UI holds its
own keyed lines (Dagster's human console log stays on stderr). QUANTOS_JSON_LOGS=off
silences it without touching dagster.yaml; the default, auto, writes nothing while stdout is a
terminal (a person running `dagster asset materialize` reads Dagster's console lines there).

A run of Dagster's implicit asset job (the UI's "Materialize", backfills, `dagster asset
materialize`) has no pipeline tag: its step lines take the pipeline from the step key, and its
run-level lines (RUN_START, ...) from the run's asset selection, read once per run and process
from the instance at DAGSTER_HOME (run_owner.py).
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from resources.run_tag_keys import TAG_PIPELINE, TAG_SUBMISSION

# Every line has exactly these keys, in this order (null where they do not apply: a run
# event has no node, a run launched outside the submission API no submission).
LOG_FIELDS = (
    "timestamp",
    "level",
    "submission_id",
    "pipeline_id",
    "node_id",
    "run_id",
    "event",
    "message",
)

# What Dagster adds to its log records; all of it is reduced to the keys above.
_DAGSTER_ATTRS = ("dagster_meta", "dagster_event", "dagster_event_batch_metadata")
# The job Dagster runs for an ad-hoc asset selection (UI "Materialize").
_IMPLICIT_JOB = "__ASSET_JOB"
# run_id -> pipeline of implicit-job runs seen by this process (None: not found)
_RUN_PIPELINES: dict[str, str | None] = {}
_RUN_LOCK = threading.Lock()


def iso_timestamp(seconds: float) -> str:
    """UTC, millisecond precision: the same text for a live line and one read back later."""
    return (
        datetime.fromtimestamp(seconds, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def step_node(step_key: str | None, pipeline: str | None) -> tuple[str | None, str | None]:
    """(pipeline_id, node_id) of a step: a node's step key is `{pipeline_id}__{node_id}`."""
    if not step_key:
        return pipeline, None
    if pipeline and step_key.startswith(f"{pipeline}__"):
        return pipeline, step_key[len(pipeline) + 2 :]
    if pipeline in (None, _IMPLICIT_JOB) and "__" in step_key:
        # An asset selection launched from the UI runs in Dagster's implicit job.
        owner, node = step_key.split("__", 1)
        return owner, node
    return pipeline, step_key


class NodeKeys(logging.Filter):
    """Puts the keys of LOG_FIELDS on a Dagster log record (run tags, step key, event)."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.enabled:
            return False
        meta: dict[str, Any] = getattr(record, "dagster_meta", None) or {}
        tags = meta.get("job_tags") or {}
        pipeline, node = step_node(
            meta.get("step_key"), tags.get(TAG_PIPELINE) or meta.get("job_name")
        )
        if (
            node is None
            and pipeline is not None
            and pipeline.startswith(_IMPLICIT_JOB)
            and meta.get("run_id")
        ):
            pipeline = implicit_run_pipeline(meta["run_id"]) or pipeline
        event = meta.get("dagster_event")
        record.timestamp = iso_timestamp(record.created)
        record.submission_id = tags.get(TAG_SUBMISSION)
        record.pipeline_id = pipeline
        record.node_id = node
        record.run_id = meta.get("run_id")
        # The enum name, as GraphQL's eventType spells it (RUN_START, not PIPELINE_START).
        record.event = event.event_type.name if event is not None else None
        # Dagster's record message repeats job, run id and step; the original is the message.
        record.node_message = meta.get("orig_message", record.getMessage())
        return True


def implicit_run_pipeline(run_id: str) -> str | None:
    """The pipeline of an implicit-job run, from its asset selection in run storage. Looked up
    once per run in a process; never raises (a log line must not fail a run)."""
    with _RUN_LOCK:
        if run_id in _RUN_PIPELINES:
            return _RUN_PIPELINES[run_id]
        _RUN_PIPELINES[run_id] = None  # also while looking: the lookup may log
        if len(_RUN_PIPELINES) > 1000:
            _RUN_PIPELINES.pop(next(iter(_RUN_PIPELINES)))
    try:
        from dagster import DagsterInstance

        from quantos_assets.observability.run_owner import run_pipeline

        with DagsterInstance.get() as instance:
            run = instance.get_run_by_id(run_id)
        found = run_pipeline(run) if run is not None else None
    except Exception:  # noqa: BLE001 - no DAGSTER_HOME (an ephemeral instance), storage down
        found = None
    _RUN_PIPELINES[run_id] = found
    return found


def node_log_formatter() -> JsonFormatter:
    return JsonFormatter(
        [
            "timestamp",
            "levelname",
            "submission_id",
            "pipeline_id",
            "node_id",
            "run_id",
            "event",
            "node_message",
        ],
        rename_fields={"levelname": "level", "node_message": "message"},
        reserved_attrs=[*RESERVED_ATTRS, *_DAGSTER_ATTRS, "taskName"],
    )


class NodeLogHandler(logging.StreamHandler[TextIO]):
    """The handler `dagster.yaml` names. Writes to whatever sys.stdout is at each event, so
    the compute log manager's capture of a step's output sees the lines."""

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        super().__init__()
        self.setLevel(level)
        self.setFormatter(node_log_formatter())
        self.addFilter(NodeKeys(_json_logs_enabled() is not False))
        # auto: decided per event, as the stdout a step's output goes to changes under capture
        self._auto = _json_logs_enabled() is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._auto and _is_terminal(sys.stdout):
            return  # a person reads Dagster's own console lines there
        super().emit(record)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """StreamHandler assigns a stream; the current sys.stdout is always used instead."""


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object
        return False


def _json_logs_enabled() -> bool | None:
    """On, off, or None: auto (on unless stdout is a terminal)."""
    from resources.profile import ProfileError, active_profile

    try:
        return active_profile().json_logs
    except ProfileError:
        # A broken profile fails the run where it is used, with its own message; the
        # log handler must not be what takes the run down.
        return True
