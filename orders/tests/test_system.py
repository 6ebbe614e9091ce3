from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import get

from devstack.servers import free_port
from orders.app import create_app
from tests.conftest import asgi_client, assert_problem, order_body, orders_settings, serving


@contextlib.asynccontextmanager
async def _app_client(
    database_url: str, books_url: str, token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app of its own (another database or books), closed afterwards."""
    app = create_app(orders_settings(database_url, books_url))
    async with serving(app), asgi_client(app, token) as client:
        yield client


class TestProbes:
    async def test_liveness_asks_nothing(self, client):
        response = await client.get("/livez")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_health_in_the_predecessors_shape(self, client):
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {
            "status": "healthy",
            "services": {"database": "healthy", "books": "healthy"},
        }

    async def test_health_is_503_when_books_is_down_and_never_hangs(
        self, orders_database_url, admin_key
    ):
        """Books on a port nobody listens on, and books that never answers: 503 at once."""
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections, never answers
        for books_url in (
            f"http://127.0.0.1:{free_port()}",
            f"http://127.0.0.1:{silent.getsockname()[1]}",
        ):
            async with _app_client(orders_database_url, books_url, admin_key) as client:
                started = time.monotonic()
                response = await client.get("/health")
                elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert response.json() == {
                "status": "unhealthy",
                "services": {"database": "healthy", "books": "unhealthy"},
            }
            assert elapsed < 2.5
        silent.close()


class TestProblemDetails:
    async def test_unknown_route_is_problem_404(self, client):
        problem = assert_problem(await client.get("/v1/nothing"), 404)
        assert problem["instance"] == "/v1/nothing"

    async def test_wrong_method_is_problem_405(self, client):
        response = await client.delete("/v1/orders")
        problem = assert_problem(response, 405)
        assert "DELETE" in problem["detail"]

    async def test_keeps_a_safe_client_request_id(self, client):
        response = await client.get("/v1/nothing", headers={"X-Request-ID": "abc-123"})
        assert assert_problem(response, 404)["request_id"] == "abc-123"

    async def test_replaces_an_unsafe_client_request_id(self, client):
        response = await client.get("/v1/nothing", headers={"X-Request-ID": "a b\\c"})
        assert response.headers["x-request-id"] != "a b\\c"

    async def test_unexpected_failure_is_problem_500_without_internals(self, orders_app):
        @get("/boom", sync_to_thread=False)
        def boom() -> None:
            raise RuntimeError("secret internals: SELECT * FROM orders")

        orders_app.register(boom)
        async with asgi_client(orders_app) as client:
            response = await client.get("/boom")
        problem = assert_problem(response, 500)
        assert problem["detail"] == "The server failed to handle this request; it has been logged."
        assert "secret" not in response.text
        assert "RuntimeError" not in response.text


class TestDatabaseDown:
    @pytest.mark.parametrize(
        ("method", "path", "headers"),
        [
            ("GET", "/v1/orders", {}),
            ("GET", "/v1/orders/1", {}),
            ("POST", "/v1/orders/1/cancel", {}),
            ("POST", "/v1/orders", {"Idempotency-Key": "k-db-down"}),
        ],
    )
    async def test_answers_503_problem_at_once(
        self, books_service, admin_key, method, path, headers
    ):
        """Nothing listens on the database port: a 503 with Retry-After, never a 500."""
        unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/orders_db"
        async with _app_client(unreachable, books_service.url, admin_key) as client:
            response = await client.request(method, path, json=order_body((1, 1)), headers=headers)
        problem = assert_problem(response, 503)
        assert problem["type"] == "/problems/database-unavailable"
        assert response.headers["retry-after"] == "5"
        assert "psycopg" not in response.text

    async def test_health_is_unhealthy_and_livez_alive(self, books_service, admin_key):
        unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/orders_db"
        async with _app_client(unreachable, books_service.url, admin_key) as client:
            health = await client.get("/health")
            alive = await client.get("/livez")
        assert health.status_code == 503
        assert health.json() == {
            "status": "unhealthy",
            "services": {"database": "unhealthy", "books": "healthy"},
        }
        assert alive.status_code == 200


class TestMetrics:
    async def test_exposes_http_business_and_client_metrics(self, client, make_book):
        book = await make_book()
        created = await client.post("/v1/orders", json=order_body((book["id"], 1)))
        await client.get(f"/v1/orders/{created.json()['id']}")
        text = (await client.get("/metrics")).text
        assert 'path="/v1/orders/{order_id}",status_code="200"' in text
        assert "orders_request_duration_seconds_bucket" in text
        assert 'orders_created_total{outcome="created"}' in text
        assert 'orders_books_client_requests_total{outcome="ok"}' in text
        assert "orders_books_client_request_duration_seconds_bucket" in text
        assert 'orders_circuit_breaker_state{circuit="books"}' in text


class TestOpenAPI:
    async def test_documents_every_error_response(self, client):
        schema = (await client.get("/docs/openapi.json")).json()
        post = schema["paths"]["/v1/orders"]["post"]
        assert set(post["responses"]) == {
            "201",
            "401",
            "403",
            "409",
            "415",
            "422",
            "429",
            "500",
            "502",
            "503",
        }
        assert "application/problem+json" in post["responses"]["422"]["content"]
        assert post["summary"] == "Place an order for one or more books."
        get_one = schema["paths"]["/v1/orders/{order_id}"]["get"]
        assert set(get_one["responses"]) == {"200", "401", "403", "404", "422", "429", "500", "503"}
        listing = schema["paths"]["/v1/orders"]["get"]
        assert set(listing["responses"]) == {"200", "401", "403", "422", "429", "500", "503"}
        cancel = schema["paths"]["/v1/orders/{order_id}/cancel"]["post"]
        assert set(cancel["responses"]) == {
            "200",
            "401",
            "403",
            "404",
            "409",
            "422",
            "429",
            "500",
            "503",
        }
        assert "/metrics" not in schema["paths"]
