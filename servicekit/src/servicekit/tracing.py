"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, each
process installs the SDK's tracer provider with a batching OTLP/HTTP (protobuf) exporter,
which reads the other standard `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*` variables itself;
`service.name` is `OTEL_SERVICE_NAME`, or the component's own name. Unset, nothing is
installed or instrumented and the SDK is not even imported: the few API calls our code
makes for the outbox and job hops are the API's no-ops.

Trace context crosses the asynchronous hops as a W3C `traceparent`: in the outbox row the
request wrote (`servicekit.outbox`), then in the meta of the RQ job the relay enqueues
(`servicekit.relay`), which the worker continues (`workers.worker`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.util.types import Attributes

from servicekit.logs import current_request_id

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACEPARENT = "traceparent"
# Named as in the JSON logs, so a trace is found by the id a log line or a client shows.
REQUEST_ID_ATTRIBUTE = "request_id"
# Probes and scrapes: frequent, and of no interest in a trace.
UNTRACED_PATHS = ("/metrics", "/health", "/livez", "/ready")

tracer = trace.get_tracer("servicekit")


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def configure_tracing(component: str, *, instrument_sql: bool = True) -> bool:
    """Install the SDK and instrument psycopg and the HTTP clients (httpx, aiohttp), once
    per process, when tracing is on; returns whether it is. Frameworks are instrumented by
    each service's app factory.

    The relays pass `instrument_sql=False`: their polling queries belong to no request and
    would each start a trace of their own, ten times a second.
    """
    if not tracing_enabled():
        return False
    if _installed_provider() is not None:
        return True
    # Imported here: a process with tracing off never loads the SDK or the instrumentations.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or component}),
        sampler=None if os.environ.get("OTEL_TRACES_SAMPLER") else _default_sampler(),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if instrument_sql:
        PsycopgInstrumentor().instrument(enable_commenter=False)
    HTTPXClientInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()
    return True


def _installed_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def _default_sampler() -> Any:
    """Every trace, except those that would begin with a client span (SQL or an outgoing
    call with no request or job around it: a readiness probe's `SELECT 1`, a purge timer).
    """
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
    )
    from opentelemetry.trace import Link, SpanKind, TraceState

    class NoOrphanClientSpans(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if kind is SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return ALWAYS_ON.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return "NoOrphanClientSpans"

    return ParentBased(root=NoOrphanClientSpans())


def flush() -> None:
    """Export the spans still buffered, for processes that end without running the SDK's
    atexit hook: RQ's pool workers are forked children that leave through `os._exit`, and
    uvicorn ends itself with the SIGTERM it caught once it has shut the app down."""
    if tracing_enabled() and (provider := _installed_provider()) is not None:
        provider.force_flush()


async def flush_async() -> None:
    """`flush()` off the event loop (it waits for the exporter's HTTP call)."""
    if tracing_enabled():
        await asyncio.to_thread(flush)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, None when there is none (tracing off)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_from(traceparent: str | None) -> Context | None:
    """The context to continue from a stored traceparent (None: start a new trace)."""
    return propagate.extract({TRACEPARENT: traceparent}) if traceparent else None


def tag_request_id(span: trace.Span) -> None:
    if (request_id := current_request_id()) is not None:
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


class RequestIdOnSpan:
    """ASGI middleware: puts the request id on the server span. Installed inside the
    request-id middleware and the tracing middleware, only when tracing is on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            tag_request_id(trace.get_current_span())
        await self.app(scope, receive, send)
