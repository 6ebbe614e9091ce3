"""Cross-cutting behaviour: problem+json for every error, request ids, probes, metrics, docs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from books.app import create_app
from books.config import Settings
from books.db import close_databases
from devstack.servers import free_port
from tests.conftest import assert_problem


async def _client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://books.test")


class TestProblemDetails:
    async def test_unknown_route_is_404(self, client: httpx.AsyncClient) -> None:
        problem = assert_problem(await client.get("/v1/nothing-here"), 404)
        assert problem["detail"] == "There is nothing at /v1/nothing-here."

    async def test_wrong_method_is_405(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/books/1")
        problem = assert_problem(response, 405)
        assert problem["detail"] == "POST is not allowed on /v1/books/1."
        # Every method of the path, as the OpenAPI document lists them (schemathesis found
        # that only the first route's were named).
        assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH, PUT"
        cover = await client.post("/v1/books/1/cover")
        assert cover.headers["allow"] == "DELETE, PUT"
        listing = await client.put("/v1/books")
        assert listing.headers["allow"] == "GET, HEAD, POST"

    async def test_unexpected_error_is_500_without_internals(
        self, books_settings: Settings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        app = create_app(books_settings)

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals: SELECT * FROM books")

        async with await _client_for(app) as client:
            response = await client.get("/boom", headers={"X-Request-ID": "trace-500"})
        problem = assert_problem(response, 500)
        assert problem["request_id"] == "trace-500"
        assert "secret" not in response.text
        assert "RuntimeError" not in response.text
        logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        error = next(line for line in logged if line["level"] == "ERROR")
        assert error["request_id"] == "trace-500"
        assert error["message"] == "unhandled error on GET /boom"
        assert "RuntimeError: secret internals" in error["exc_info"]
        await close_databases(app)


class TestRequestId:
    async def test_echoes_a_valid_request_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health", headers={"X-Request-ID": "abc-123.def"})
        assert response.headers["x-request-id"] == "abc-123.def"

    async def test_generates_one_when_absent(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")
        assert len(response.headers["x-request-id"]) == 32

    @pytest.mark.parametrize("bad", ["has space", "x" * 200, "semi;colon", "new\\nline"])
    async def test_replaces_unsafe_ids(self, client: httpx.AsyncClient, bad: str) -> None:
        response = await client.get("/health", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad


class TestProbes:
    async def test_liveness_asks_nothing(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/livez")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_health_in_the_predecessors_shape(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {
            "status": "healthy",
            "service": "books",
            "cloudinary_configured": False,
            "cloudinary_ready": False,
        }

    async def test_health_says_whether_covers_are_configured(
        self, books_settings: Settings
    ) -> None:
        settings = books_settings.model_copy(
            update={"cloudinary_url": SecretStr("cloudinary://key:secret@demo")}
        )
        app = create_app(settings)
        async with await _client_for(app) as client:
            body = (await client.get("/health")).json()
        assert body["cloudinary_configured"] is body["cloudinary_ready"] is True
        await close_databases(app)

    async def test_ready_when_database_answers(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/ready")
        assert response.status_code == 200
        assert response.json()["database"] == "up"

    async def test_not_ready_nor_healthy_but_alive_when_database_is_down(self) -> None:
        settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none")
        app = create_app(settings)
        async with await _client_for(app) as client:
            ready = await client.get("/ready")
            health = await client.get("/health")
            alive = await client.get("/livez")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "database": "down"}
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert health.json()["service"] == "books"
        assert alive.status_code == 200
        await close_databases(app)

    async def test_api_answers_503_problem_when_database_is_down(self) -> None:
        settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none")
        app = create_app(settings)
        async with await _client_for(app) as client:
            response = await client.get("/v1/books")
        problem = assert_problem(response, 503)
        assert "database" in problem["detail"].lower()
        assert "Retry-After" in response.headers
        await close_databases(app)


class TestMetrics:
    async def test_http_metrics_use_route_templates(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        book = await make_book()
        await client.get(f"/v1/books/{book['id']}")
        text = (await client.get("/metrics")).text
        assert 'handler="/v1/books/{book_id}"' in text
        assert f'handler="/v1/books/{book["id"]}"' not in text
        assert "books_created_total" in text


class TestOpenApi:
    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    async def test_the_documentation_pages_are_served(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")

    async def test_documents_public_routes_and_problems(self, client: httpx.AsyncClient) -> None:
        spec = (await client.get("/openapi.json")).json()
        assert {"/v1/books", "/v1/books/{book_id}", "/health", "/ready"} <= spec["paths"].keys()
        create = spec["paths"]["/v1/books"]["post"]
        assert create["summary"] == "Add a book to the catalog"
        assert {"201", "415", "422", "500"} <= create["responses"].keys()
        problem = create["responses"]["422"]["content"]["application/problem+json"]
        assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
        assert "/metrics" not in spec["paths"]
