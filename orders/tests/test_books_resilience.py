"""Books down, failing, hanging or flapping: orders answer 503 fast and record nothing."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from litestar import Litestar
from prometheus_client import REGISTRY

from devstack.servers import free_port
from devstack.services import ServiceProcess
from orders.app import create_app
from orders.config import Settings
from tests.conftest import (
    asgi_client,
    assert_nothing_written,
    assert_problem,
    order_body,
    orders_settings,
    row_counts,
    serving,
)

BREAKER_THRESHOLD = 2
BREAKER_RESET_S = 1.0


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def own_books(books_database_url: str) -> Iterator[ServiceProcess]:
    """A books process of this test's own, free to be stopped and started again."""
    with ServiceProcess(
        "books.app:create_app", free_port(), {"BOOKS_DATABASE_URL": books_database_url}
    ) as service:
        yield service


@pytest.fixture
async def outage_settings(orders_database_url: str, own_books: ServiceProcess) -> Settings:
    return orders_settings(
        orders_database_url,
        own_books.url,
        books_breaker_threshold=BREAKER_THRESHOLD,
        books_breaker_reset_s=BREAKER_RESET_S,
    )


async def _client_for(settings: Settings, token: str) -> AsyncIterator[tuple[Litestar, object]]:
    app = create_app(settings)
    async with serving(app), asgi_client(app, token) as client:
        yield app, client


@pytest.fixture
async def outage(outage_settings: Settings, admin_key: str):  # type: ignore[no-untyped-def]
    async for pair in _client_for(outage_settings, admin_key):
        yield pair


class TestBooksDown:
    async def test_answers_503_with_retry_after_fast_and_writes_nothing(
        self, outage, own_books, make_book, db, outage_settings
    ):
        _, client = outage
        book = await make_book()
        own_books.stop()
        started = time.monotonic()
        response = await client.post(
            "/v1/orders", json=order_body((book["id"], 1)), headers={"Idempotency-Key": "k-down"}
        )
        elapsed = time.monotonic() - started
        problem = assert_problem(response, 503)
        assert problem["type"] == "/problems/books-unavailable"
        assert int(response.headers["retry-after"]) >= 1
        assert elapsed < outage_settings.books_timeout_s
        assert_nothing_written(db)

    async def test_ready_reports_books_down(self, outage, own_books):
        _, client = outage
        assert (await client.get("/ready")).json() == {
            "status": "ok",
            "database": "up",
            "books": "up",
        }
        own_books.stop()
        response = await client.get("/ready")
        assert response.status_code == 503
        assert response.json()["books"] == "down"


class TestCircuitBreaker:
    async def test_opens_after_threshold_and_closes_after_reset(
        self, outage, own_books, make_book, db
    ):
        _, client = outage
        book = await make_book()
        body = order_body((book["id"], 1))
        assert (await client.post("/v1/orders", json=body)).status_code == 201
        own_books.stop()
        for _ in range(BREAKER_THRESHOLD):
            assert_problem(await client.post("/v1/orders", json=body), 503)
        assert metric("orders_circuit_breaker_state", circuit="books") == 2

        open_before = metric("orders_books_client_requests_total", outcome="circuit_open")
        response = await client.post("/v1/orders", json=body)
        assert_problem(response, 503)
        assert 1 <= int(response.headers["retry-after"]) <= BREAKER_RESET_S + 1
        assert metric("orders_books_client_requests_total", outcome="circuit_open") == (
            open_before + 1
        )

        own_books.start()
        await asyncio.sleep(BREAKER_RESET_S)
        assert (await client.post("/v1/orders", json=body)).status_code == 201
        assert metric("orders_circuit_breaker_state", circuit="books") == 0
        assert row_counts(db)["orders"] == 2
        assert row_counts(db)["outbox"] == 2

    async def test_after_the_reset_one_lookup_probes_and_the_others_fail_at_once(
        self, orders_database_url, postgres_server_url, db, admin_key
    ):
        """A books process whose database is gone answers 500 to every lookup."""
        missing_db = postgres_server_url.rpartition("/")[0] + "/no_such_books_db"
        with ServiceProcess(
            "books.app:create_app", free_port(), {"BOOKS_DATABASE_URL": missing_db}
        ) as failing_books:
            settings = orders_settings(
                orders_database_url,
                failing_books.url,
                books_breaker_threshold=BREAKER_THRESHOLD,
                books_breaker_reset_s=BREAKER_RESET_S,
            )
            async for _, client in _client_for(settings, admin_key):
                for _ in range(BREAKER_THRESHOLD):
                    assert_problem(await client.post("/v1/orders", json=order_body((1, 1))), 503)
                await asyncio.sleep(BREAKER_RESET_S + 0.1)
                before = failing_books.output().count("GET /v1/books?ids=1")
                responses = await asyncio.gather(
                    *(client.post("/v1/orders", json=order_body((1, 1))) for _ in range(10))
                )
                probed = failing_books.output().count("GET /v1/books?ids=1") - before
        assert [response.status_code for response in responses] == [503] * 10
        assert probed == settings.books_retry_attempts
        assert_nothing_written(db)


class TestBooksFailing:
    async def test_5xx_is_retried_then_503(
        self, orders_database_url, postgres_server_url, db, admin_key
    ):
        """A books process whose database is gone answers 500 to every lookup."""
        missing_db = postgres_server_url.rpartition("/")[0] + "/no_such_books_db"
        with ServiceProcess(
            "books.app:create_app", free_port(), {"BOOKS_DATABASE_URL": missing_db}
        ) as failing_books:
            settings = orders_settings(orders_database_url, failing_books.url)
            async for _, client in _client_for(settings, admin_key):
                response = await client.post("/v1/orders", json=order_body((1, 1)))
                assert_problem(response, 503)
            lookups = failing_books.output().count("GET /v1/books?ids=1")
        assert lookups == settings.books_retry_attempts
        assert_nothing_written(db)

    async def test_hanging_books_is_cut_off_at_the_timeout(
        self, orders_database_url, db, admin_key
    ):
        """A server that accepts connections and never answers."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            settings = orders_settings(orders_database_url, url, books_timeout_s=0.5)
            async for _, client in _client_for(settings, admin_key):
                started = time.monotonic()
                response = await client.post("/v1/orders", json=order_body((1, 1)))
                elapsed = time.monotonic() - started
        assert_problem(response, 503)
        assert elapsed < 2 * settings.books_timeout_s
        assert_nothing_written(db)
