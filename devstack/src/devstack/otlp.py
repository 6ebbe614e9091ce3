"""An OTLP/HTTP trace receiver for tests and the bench: keeps the spans the services export.

Written here because what the tests need, the spans of real processes decoded and held in
memory, is a few lines over `opentelemetry-proto` (which the exporter brings), while a
collector or Jaeger would be another server to install and to query. Speaks only what
the services' exporter sends: protobuf `ExportTraceServiceRequest`s POSTed to /v1/traces;
`GET /` answers how many spans and exports it has received.

`python -m devstack.otlp PORT` runs one as a process of its own (the bench's, so that
decoding spans takes no time from the load generator).
"""

from __future__ import annotations

import gzip
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from devstack.servers import free_port

KINDS = {
    SpanMessage.SPAN_KIND_INTERNAL: "internal",
    SpanMessage.SPAN_KIND_SERVER: "server",
    SpanMessage.SPAN_KIND_CLIENT: "client",
    SpanMessage.SPAN_KIND_PRODUCER: "producer",
    SpanMessage.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    start_ns: int = 0
    end_ns: int = 0


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        kind=KINDS.get(span.kind, "unspecified"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                    )
                )
    return spans


@dataclass
class OtlpReceiver:
    """The spans received so far, in arrival order; `url` is what OTEL_EXPORTER_OTLP_ENDPOINT
    takes (the exporter appends /v1/traces)."""

    port: int
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()

    def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], *, timeout_s: float, what: str
    ) -> list[ReceivedSpan]:
        """The spans, once `condition` holds for them (exports arrive in batches)."""
        deadline = time.monotonic() + timeout_s
        while not condition(spans := self.snapshot()):
            if time.monotonic() > deadline:
                names = sorted({f"{s.service}: {s.name}" for s in spans})
                raise AssertionError(f"no {what} after {timeout_s} s; spans received: {names}")
            time.sleep(0.1)
        return spans


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.add(decode(body))
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self) -> None:
            counts = {"spans": len(receiver.snapshot()), "exports": receiver.requests}
            answer = json.dumps(counts).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: one line per export would bury the test's output."""

    return Handler


@contextmanager
def otlp_receiver(port: int | None = None) -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on 127.0.0.1, serving from a thread until the block ends."""
    receiver = OtlpReceiver(port or free_port())
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main() -> None:
    """Receive (and count) spans on the port given until SIGTERM or SIGINT."""
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    with otlp_receiver(int(sys.argv[1])) as receiver:
        print(f"OTLP/HTTP receiver on {receiver.url}", flush=True)
        stopped.wait()


if __name__ == "__main__":
    main()
