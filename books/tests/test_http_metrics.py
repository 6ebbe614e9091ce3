"""The HTTP metrics: the instrumentator's series, names and labels, by route template."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.routing import Route

from books.http_metrics import HttpMetrics
from tests.conftest import book_payload

BOOK = "/v1/books/{book_id}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def requests(method: str, status: str, handler: str) -> float:
    return sample("http_requests_total", method=method, status=status, handler=handler)


class TestSeries:
    async def test_reads_count_in_every_series_under_their_template(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        book = await make_book()
        before = {
            "total": requests("GET", "200", BOOK),
            "latency": sample("http_request_duration_seconds_count", method="GET", handler=BOOK),
            "highr": sample("http_request_duration_highr_seconds_count"),
            "out_count": sample("http_response_size_bytes_count", handler=BOOK),
            "out_sum": sample("http_response_size_bytes_sum", handler=BOOK),
            "in_count": sample("http_request_size_bytes_count", handler=BOOK),
        }
        # Twice: the second finds the series the first one labelled.
        responses = [await client.get(f"/v1/books/{book['id']}") for _ in range(2)]
        assert [response.status_code for response in responses] == [200, 200]
        assert requests("GET", "200", BOOK) == before["total"] + 2
        assert (
            sample("http_request_duration_seconds_count", method="GET", handler=BOOK)
            == before["latency"] + 2
        )
        assert sample("http_request_duration_highr_seconds_count") == before["highr"] + 2
        assert sample("http_response_size_bytes_count", handler=BOOK) == before["out_count"] + 2
        assert sample("http_response_size_bytes_sum", handler=BOOK) == before["out_sum"] + sum(
            int(response.headers["content-length"]) for response in responses
        )
        assert sample("http_request_size_bytes_count", handler=BOOK) == before["in_count"] + 2
        text = (await client.get("/metrics")).text
        assert f'handler="/v1/books/{book["id"]}"' not in text

    async def test_a_request_body_counts_its_declared_length(
        self, client: httpx.AsyncClient
    ) -> None:
        body = json.dumps(book_payload()).encode()
        before = sample("http_request_size_bytes_sum", handler="/v1/books")
        response = await client.post(
            "/v1/books", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 201
        assert sample("http_request_size_bytes_sum", handler="/v1/books") == before + len(body)

    @pytest.mark.parametrize(
        ("method", "path", "status", "handler"),
        [
            ("GET", "/v1/books/abc", "422", BOOK),
            ("GET", "/v1/books/999999", "404", BOOK),
            ("POST", "/v1/books/1", "405", BOOK),
            ("GET", "/no/such/path", "404", "none"),
        ],
    )
    async def test_errors_count_under_the_template_or_none(
        self, client: httpx.AsyncClient, method: str, path: str, status: str, handler: str
    ) -> None:
        before = requests(method, status, handler)
        response = await client.request(method, path)
        assert response.status_code == int(status)
        assert requests(method, status, handler) == before + 1

    async def test_probes_and_scrapes_are_not_counted(self, client: httpx.AsyncClient) -> None:
        for path in ("/health", "/livez", "/ready", "/metrics"):
            assert (await client.get(path)).status_code in (200, 503)
        text = (await client.get("/metrics")).text
        for path in ("/health", "/livez", "/ready", "/metrics"):
            assert f'handler="{path}"' not in text


class TestFailures:
    async def test_an_unhandled_error_counts_as_500_and_goes_on_up(self) -> None:
        async def fail(_: Any) -> None:
            raise RuntimeError("boom")

        app = HttpMetrics(Starlette(routes=[Route("/fail", fail)]), excluded=frozenset())
        before = requests("GET", "500", "/fail")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with pytest.raises(RuntimeError, match="boom"):
                await client.get("/fail")
        assert requests("GET", "500", "/fail") == before + 1
