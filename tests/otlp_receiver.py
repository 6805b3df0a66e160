"""An OTLP/HTTP trace receiver on loopback, as Tempo or an OpenTelemetry collector listens on
4318: POST /v1/traces with a protobuf ExportTraceServiceRequest, decoded with
opentelemetry-proto (which the exporter brings). The tests read the spans it received and the
raw bodies (to look for a secret in any of them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from loopback_http import QuietHandler, serve_http
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error


@dataclass
class Receiver:
    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)

    def trace_of(self, attribute: str, value: str, timeout: float = 30) -> str:
        """The trace id of the first span whose `attribute` is `value`, once it arrived
        (exporters batch: the gateway's every 5 s, a run worker's at its end)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [s.trace_id for s in self.received() if s.attributes.get(attribute) == value]
            if found or time.monotonic() > deadline:
                assert found, f"no span with {attribute}={value} within {timeout} s"
                return found[0]
            time.sleep(0.2)

    def spans_of(self, trace_id: str, count: int, timeout: float = 30) -> list[ReceivedSpan]:
        """The trace's spans once `count` arrived (or whatever did by `timeout`), and half a
        second more for any beyond `count` to show up."""
        deadline = time.monotonic() + timeout
        while len(self.trace(trace_id)) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        return self.trace(trace_id)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.received() if s.trace_id == trace_id]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            spans = [
                ReceivedSpan(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    resource={a.key: _value(a.value) for a in batch.resource.attributes},
                    status_code=span.status.code,
                )
                for batch in request.resource_spans
                for scope in batch.scope_spans
                for span in scope.spans
            ]
            with receiver.lock:
                receiver.bodies.append(body)
                receiver.spans.extend(spans)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with serve_http(Handler) as url:
        receiver.url = url
        yield receiver
