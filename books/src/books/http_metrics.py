"""The HTTP metrics of the books API: the series prometheus-fastapi-instrumentator's default
set recorded, under the same names, labels and buckets (the dashboards and alerts read
them), recorded by a plain ASGI middleware.

Written here rather than taken from the instrumentator because of what it cost: its
middleware builds a Starlette `Request` and `Response`, an info object and an empty
`asyncio.gather` for every request and matches the path against every route a second
time, which came to 0.14-0.16 ms of the 0.68-0.71 ms of CPU a books process spent on a
GET by id (measured by dropping it: README, Benchmarks). Here the route is the one the
router already matched (Starlette leaves it in the scope), and each request costs five
samples.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram, Summary
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "http_requests_total",
    "Total number of requests by method, status and handler.",
    ["method", "status", "handler"],
)
REQUEST_SIZE = Summary(
    "http_request_size_bytes",
    "Content length of incoming requests by handler. Only value of header is respected. "
    "Otherwise ignored. No percentile calculated. ",
    ["handler"],
)
RESPONSE_SIZE = Summary(
    "http_response_size_bytes",
    "Content length of outgoing responses by handler. Only value of header is respected. "
    "Otherwise ignored. No percentile calculated. ",
    ["handler"],
)
LATENCY_HIGHR = Histogram(
    "http_request_duration_highr_seconds",
    "Latency with many buckets but no API specific labels. "
    "Made for more accurate percentile calculations. ",
    buckets=(
        *(0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3),
        *(3.5, 4, 4.5, 5, 7.5, 10, 30, 60, float("inf")),
    ),
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Latency with only few buckets by handler. "
    "Made to be only used if aggregation by handler is important. ",
    ["method", "handler"],
    buckets=(0.1, 0.5, 1, float("inf")),
)
# The handler of a request that matched no route: one series for all of them, not one
# per path a client made up.
UNMATCHED = "none"


class HttpMetrics:
    """Counts and times each HTTP request by the route template it matched (`handler`),
    except those to `excluded` templates (probes, the scrape itself)."""

    def __init__(self, app: ASGIApp, *, excluded: frozenset[str]) -> None:
        self.app = app
        self.excluded = excluded
        self.series: dict[tuple[str, int, str], _Series] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_size = 0

        async def recording_send(message: Message) -> None:
            nonlocal status, response_size
            if message["type"] == "http.response.start":
                status = message["status"]
                response_size = _content_length(message["headers"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            handler = getattr(scope.get("route"), "path", UNMATCHED)
            if handler not in self.excluded:
                duration = max(time.perf_counter() - started, 0.0)
                labels = (scope["method"], status, handler)
                if (series := self.series.get(labels)) is None:
                    series = self.series[labels] = _Series(*labels)
                series.requests.inc()
                series.request_size.observe(_content_length(scope["headers"]))
                series.response_size.observe(response_size)
                LATENCY_HIGHR.observe(duration)
                series.latency.observe(duration)


class _Series:
    """The labelled series of one method, status and handler, looked up once: prometheus_client
    takes a lock and validates the labels on every `labels()` call."""

    def __init__(self, method: str, status: int, handler: str) -> None:
        self.requests = REQUESTS.labels(method, str(status), handler)
        self.request_size = REQUEST_SIZE.labels(handler)
        self.response_size = RESPONSE_SIZE.labels(handler)
        self.latency = LATENCY.labels(method, handler)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length header's value; 0 without one (as the instrumentator counted)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0
