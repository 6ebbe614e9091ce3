"""Who may call the internal API, and what the public documents say about it."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY

from books.app import create_app
from books.db import close_databases
from tests.conftest import SERVICE_KEY, assert_problem, internal_settings
from tests.inventory.conftest import (
    RELEASES,
    RESERVATIONS,
    lines,
    reservations,
    stock_of,
)

ENDPOINTS = [
    (RESERVATIONS, {"reference": "order:1", "lines": lines((1, 1))}),
    (RELEASES, {"reference": "order:1"}),
]


class TestServiceKey:
    @pytest.mark.parametrize(("path", "body"), ENDPOINTS)
    async def test_missing_key_is_401(  # type: ignore[no-untyped-def]
        self, client: httpx.AsyncClient, make_book, db: psycopg.Connection[Any], path, body
    ) -> None:
        book = await make_book(stock=5)
        response = await client.post(path, json=body)
        problem = assert_problem(response, 401)
        assert problem["detail"] == "Send the service key in the X-Service-Key header."
        assert response.headers["www-authenticate"] == "APIKey"
        assert reservations(db) == {}
        assert stock_of(db, book["id"]) == 5

    @pytest.mark.parametrize(
        "key",
        [SERVICE_KEY + "x", SERVICE_KEY[:-1], "", SERVICE_KEY.upper(), "cl\xe9".encode("latin-1")],
    )
    async def test_wrong_key_is_401(  # type: ignore[no-untyped-def]
        self, client: httpx.AsyncClient, make_book, db: psycopg.Connection[Any], key
    ) -> None:
        book = await make_book(stock=5)
        body = {"reference": "order:1", "lines": lines((book["id"], 1))}
        response = await client.post(RESERVATIONS, json=body, headers={"X-Service-Key": key})
        assert_problem(response, 401)
        assert reservations(db) == {}
        assert stock_of(db, book["id"]) == 5

    async def test_key_is_checked_before_the_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post(RESERVATIONS, json={"lines": "nonsense"})
        assert_problem(response, 401)

    @pytest.mark.parametrize(("path", "body"), ENDPOINTS)
    async def test_without_a_configured_key_everything_is_refused(  # type: ignore[no-untyped-def]
        self, books_database_url: str, path, body
    ) -> None:
        app = create_app(internal_settings(books_database_url, SERVICE_KEY=None))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://books.test") as client:
            response = await client.post(path, json=body, headers={"X-Service-Key": ""})
        problem = assert_problem(response, 503)
        assert "SERVICE_KEY" in problem["detail"]
        await close_databases(app)


class TestPublicDocuments:
    async def test_openapi_does_not_mention_the_internal_api(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        assert not [path for path in document["paths"] if path.startswith("/internal")]
        assert "ReservationRequest" not in document["components"]["schemas"]
        assert "stock" in document["components"]["schemas"]["BookRead"]["properties"]


class TestMetrics:
    async def test_counts_reservations_and_releases_by_outcome(  # type: ignore[no-untyped-def]
        self, make_book, reserve, release, client: httpx.AsyncClient
    ) -> None:
        def sample(name: str, outcome: str) -> float:
            return REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0

        reservations_total, releases_total = (
            "books_stock_reservations_total",
            "books_stock_releases_total",
        )
        before = {
            outcome: sample(reservations_total, outcome)
            for outcome in ("reserved", "rejected", "replayed")
        } | {
            "released": sample(releases_total, "released"),
            "not_reserved": sample(releases_total, "not_reserved"),
        }
        book = await make_book(stock=1)
        await reserve("order:1", (book["id"], 1))
        await reserve("order:1", (book["id"], 1))
        await reserve("order:2", (book["id"], 1))
        await release("order:1")
        await release("order:2")
        assert sample(reservations_total, "reserved") == before["reserved"] + 1
        assert sample(reservations_total, "replayed") == before["replayed"] + 1
        assert sample(reservations_total, "rejected") == before["rejected"] + 1
        assert sample(releases_total, "released") == before["released"] + 1
        assert sample(releases_total, "not_reserved") == before["not_reserved"] + 1
        exposed = (await client.get("/metrics")).text
        assert 'books_stock_reservations_total{outcome="reserved"}' in exposed
