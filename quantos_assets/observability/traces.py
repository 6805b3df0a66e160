"""OpenTelemetry spans of a submission, its run and each of its steps, as one trace (seed 000 §6).

The three live in different processes (the gateway, the run worker, each step's process or
pod), so the trace context travels in run tags, never in process memory:

- the gateway's `submission` span writes its W3C `traceparent` into the stored launch
  request; the dispatcher puts it on the run as `quantos/traceparent` (TAG_TRACEPARENT);
- the run worker (the warm launcher's forked child locally, the run pod on Kubernetes: both
  apps/launcher/run_worker.py) opens the `run` span under it (a run without it, from Kafka, a
  schedule or the UI, starts its own trace there) and writes the run span's context on the
  run as `quantos/run_traceparent` before the run starts;
- every step opens its `step` span under that tag, read from the run's tags.

Off unless the profile names an OTLP endpoint (QUANTOS_OTLP_ENDPOINT): then no SDK is
imported and no provider, exporter or thread exists; each call costs one check of a
module global. On, each process gets one TracerProvider on first use, exporting through a
BatchSpanProcessor (a background thread; never on the step's path), flushed when the
process exits, also a forkserver step process, which skips atexit. An unreachable collector
costs at most the export timeout at exit and never an error: export failures are the
SDK's logged warnings.

No span carries a token, a params value or a secret: only ids (submission, pipeline, run,
node, team), asset keys, the node's kind and the attempt; a failed step's status names the
exception's type, not its message (which may quote data).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resources.run_tag_keys import (
    TAG_PIPELINE,
    TAG_RUN_TRACEPARENT,
    TAG_SUBMISSION,
    TAG_TEAM,
    TAG_TRACEPARENT,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from resources.profile import TraceSettings

SERVICE_NAME = "quantos"
# Span attribute names: the same keys as the keyed JSON log lines (node_logs.py), namespaced.
ATTR_SUBMISSION = "quantos.submission_id"
ATTR_PIPELINE = "quantos.pipeline_id"
ATTR_TEAM = "quantos.team"
ATTR_RUN = "quantos.run_id"
ATTR_NODE = "quantos.node_id"
ATTR_ASSETS = "quantos.asset_keys"
ATTR_KIND = "quantos.kind"
ATTR_ATTEMPT = "quantos.attempt"
ATTR_STEP = "dagster.step_key"
ATTR_JOB = "dagster.job_name"
ATTR_SESSION = "quantos.session"


@dataclass
class Tracing:
    """This process's tracer and the provider whose exporter it feeds."""

    provider: TracerProvider
    tracer: Tracer
    pid: int
    _closed: bool = False

    def flush(self) -> None:
        """Export what is queued now (bounded by the export timeout; never raises)."""
        with contextlib.suppress(Exception):
            self.provider.force_flush()

    def close(self) -> None:
        """Flush and stop the exporter thread: at process exit, once."""
        if self._closed or os.getpid() != self.pid:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.provider.shutdown()


_UNSET: Any = object()
_PROCESS: Tracing | None = _UNSET  # this process's tracing once looked up; None: off
_LOCK = threading.Lock()


def tracing() -> Tracing | None:
    """This process's tracing, set up from the profile on first use; None when tracing is off
    (or the profile is broken: the run or request fails on that elsewhere, not here)."""
    current = _PROCESS
    if current is not _UNSET and (current is None or current.pid == os.getpid()):
        return current
    return _set_up()


def _set_up() -> Tracing | None:
    global _PROCESS
    with _LOCK:
        current = _PROCESS
        if current is not _UNSET and (current is None or current.pid == os.getpid()):
            return current
        from resources.profile import ProfileError, active_profile

        try:
            settings = active_profile().traces
        except ProfileError:
            settings = None
        _PROCESS = start_tracing(settings) if settings is not None and settings.enabled else None
        return _PROCESS


def close_tracing() -> None:
    """Flush and stop this process's exporter, if tracing was set up: for a server's shutdown
    (uvicorn ends by re-raising the signal it caught, which skips atexit)."""
    current = _PROCESS
    if current is not _UNSET and current is not None:
        current.close()


def use_tracing(found: Tracing | None) -> None:
    """Make `found` this process's tracing (None: off) instead of the profile's: for a
    benchmark comparing on and off in one process."""
    global _PROCESS
    with _LOCK:
        _PROCESS = found


def start_tracing(settings: TraceSettings) -> Tracing:
    """A provider exporting to `settings.endpoint`, closed when this process exits."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        # the pid tells a forkserver step's spans from its run worker's
        resource=Resource.create({"service.name": SERVICE_NAME, "process.pid": os.getpid()}),
        shutdown_on_exit=False,
    )
    exporter = OTLPSpanExporter(endpoint=settings.endpoint, timeout=settings.timeout_s)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, export_timeout_millis=settings.timeout_s * 1000)
    )
    found = Tracing(provider, provider.get_tracer("quantos_assets"), os.getpid())
    # atexit for an ordinary interpreter exit; multiprocessing's finalizer for a forkserver or
    # fork child (a step process), which ends in os._exit after running only those.
    atexit.register(found.close)
    multiprocessing.util.Finalize(None, found.close, exitpriority=100)
    return found


# -- the three spans --------------------------------------------------------------------------


@contextlib.contextmanager
def submission_span(submission_id: str, pipeline_id: str, team: str) -> Iterator[str | None]:
    """The gateway's span of one submit request; yields its `traceparent` (None when off)."""
    found = tracing()
    if found is None:
        yield None
        return
    attributes = {ATTR_SUBMISSION: submission_id, ATTR_PIPELINE: pipeline_id, ATTR_TEAM: team}
    with _span(found, "submission", None, attributes) as span:
        yield _traceparent(span)


@contextlib.contextmanager
def run_span(run_id: str, job_name: str, tags: Mapping[str, str]) -> Iterator[str | None]:
    """The run worker's span of one run, under the submission's span when the run has one;
    yields its `traceparent` for the run's tags (None when off). Flushed when it ends: the
    worker exits right after."""
    found = tracing()
    if found is None:
        yield None
        return
    attributes = {ATTR_RUN: run_id, ATTR_JOB: job_name, **_run_attributes(tags)}
    parent = _parent(tags.get(TAG_TRACEPARENT))
    try:
        with _span(found, "run", parent, attributes) as span:
            yield _traceparent(span)
    finally:
        found.flush()


@contextlib.contextmanager
def step_span(
    tags: Mapping[str, str],
    run_id: str,
    node_id: str,
    asset_keys: Sequence[str],
    kind: str,
    attempt: int,
    session: str | None = None,
) -> Iterator[None]:
    """One step's span, under its run's span as the run's tags name it (or the submission's,
    for a run no worker of ours started, e.g. `execute_in_process` or another launcher)."""
    found = tracing()
    if found is None:
        yield
        return
    attributes: dict[str, Any] = {
        ATTR_RUN: run_id,
        ATTR_NODE: node_id,
        ATTR_ASSETS: list(asset_keys),
        ATTR_KIND: kind,
        ATTR_ATTEMPT: attempt,
        **_run_attributes(tags),
    }
    if session is not None:
        attributes[ATTR_SESSION] = session
    parent = _parent(tags.get(TAG_RUN_TRACEPARENT) or tags.get(TAG_TRACEPARENT))
    with _span(found, "step", parent, attributes):
        yield


@contextlib.contextmanager
def _span(found: Tracing, name: str, parent: Any, attributes: dict[str, Any]) -> Iterator[Span]:
    """A span made current; an exception through it sets status ERROR naming the exception's
    type only (its message may quote a request, data or params) and is not recorded."""
    from opentelemetry.trace import Status, StatusCode

    with found.tracer.start_as_current_span(
        name,
        context=parent,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as err:
            status = getattr(err, "status", None)  # the gateway's ApiError: its HTTP status
            if isinstance(status, int):
                span.set_attribute("http.response.status_code", status)
            span.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise


def _run_attributes(tags: Mapping[str, str]) -> dict[str, str]:
    keys = ((ATTR_SUBMISSION, TAG_SUBMISSION), (ATTR_PIPELINE, TAG_PIPELINE), (ATTR_TEAM, TAG_TEAM))
    return {attr: tags[tag] for attr, tag in keys if tags.get(tag)}


def _traceparent(span: Span) -> str | None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _parent(traceparent: str | None) -> Any:
    """The context a `traceparent` names; None (a new trace) when absent or malformed."""
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})
