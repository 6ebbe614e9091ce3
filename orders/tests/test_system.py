from __future__ import annotations

from orders.app import create_app
from tests.conftest import asgi_client, assert_problem, order_body, orders_settings


class TestProbes:
    async def test_health(self, client):
        response = await client.get("/health")
        assert response.json() == {"status": "ok"}

    async def test_ready_checks_database_and_books(self, client):
        response = await client.get("/ready")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "up", "books": "up"}


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

    async def test_unexpected_failure_is_problem_500_without_internals(
        self, books_service, postgres_server_url
    ):
        """A database that does not exist: every query fails inside the request."""
        missing = postgres_server_url.rpartition("/")[0] + "/no_such_orders_db"
        app = create_app(orders_settings(missing, books_service.url, db_pool_timeout_s=1.0))
        async with asgi_client(app) as broken:
            response = await broken.get("/v1/orders/1")
        await app.state.books_http.aclose()
        await app.state.engine.dispose()
        problem = assert_problem(response, 500)
        assert problem["detail"] == "The server failed to handle this request; it has been logged."
        assert "no_such_orders_db" not in response.text
        assert "psycopg" not in response.text


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
        assert set(post["responses"]) == {"201", "409", "415", "422", "500", "502", "503"}
        assert "application/problem+json" in post["responses"]["422"]["content"]
        assert post["summary"] == "Place an order for one or more books."
        get_one = schema["paths"]["/v1/orders/{order_id}"]["get"]
        assert set(get_one["responses"]) == {"200", "404", "422", "500"}
        assert set(schema["paths"]["/v1/orders"]["get"]["responses"]) == {"200", "422", "500"}
        assert "/metrics" not in schema["paths"]
