"""servicekit.tracing with tracing off (the cross-process traces are in workers/tests)."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from servicekit import tracing

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TestEnabled:
    @pytest.mark.parametrize(
        ("environ", "enabled"),
        [
            ({}, False),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
            ({"OTEL_SERVICE_NAME": "books"}, False),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, True),
            ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, True),
        ],
    )
    def test_only_an_otlp_endpoint_turns_tracing_on(
        self, environ: dict[str, str], enabled: bool
    ) -> None:
        assert tracing.tracing_enabled(environ) is enabled

    def test_configure_does_nothing_without_an_endpoint(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in tracing.ENDPOINT_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        assert tracing.configure_tracing("books") is False
        assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


class TestContext:
    def test_no_traceparent_without_a_span(self) -> None:
        assert tracing.current_traceparent() is None

    def test_a_stored_traceparent_is_continued(self) -> None:
        context = tracing.context_from(TRACEPARENT)
        assert context is not None
        parent = trace.get_current_span(context).get_span_context()
        assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}") == (
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        )
        assert parent.is_remote

    @pytest.mark.parametrize("stored", [None, ""])
    def test_no_stored_traceparent_starts_afresh(self, stored: str | None) -> None:
        assert tracing.context_from(stored) is None

    def test_a_malformed_traceparent_starts_afresh(self) -> None:
        context = tracing.context_from("00-not-a-trace")
        assert context is not None
        assert not trace.get_current_span(context).get_span_context().is_valid
