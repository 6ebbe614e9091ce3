"""Writes need an admin key; reads stay public; every caller has a rate limit in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import REGISTRY

from books.app import create_app
from books.config import Settings
from books.db import close_databases
from books.http import BooksRoute
from devstack.servers import free_port
from servicekit.api_keys import Role, bearer, new_token, revoke_key, token_prefix
from tests.conftest import (
    KEY_HEADER,
    assert_problem,
    book_payload,
    client_for,
    count_books,
    internal_settings,
)

WRITES = [
    ("POST", "/v1/books", book_payload()),
    ("PATCH", "/v1/books/{id}", {"price": "1.00"}),
    ("PUT", "/v1/books/{id}", {"price": "1.00"}),
    ("DELETE", "/v1/books/{id}", None),
    ("DELETE", "/v1/books/{id}/cover", None),
]


async def write(
    client: httpx.AsyncClient, method: str, path: str, body: Any, book_id: int, **headers: str
) -> httpx.Response:
    return await client.request(method, path.format(id=book_id), json=body, headers=headers)


class TestWritesNeedAnAdminKey:
    @pytest.mark.parametrize(("method", "path", "body"), WRITES)
    async def test_without_a_key_is_401_and_changes_nothing(
        self, anonymous: httpx.AsyncClient, make_book, db, method, path, body
    ) -> None:
        book = await make_book()
        response = await write(anonymous, method, path, body, book["id"])
        problem = assert_problem(response, 401)
        assert problem["error"] == "API_KEY_REQUIRED"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await anonymous.get(f"/v1/books/{book['id']}")).json() == book
        assert count_books(db) == 1

    @pytest.mark.parametrize(
        "authorization",
        ["Bearer " + new_token(), "Bearer not-a-key", "Basic YWRtaW46YWRtaW4=", "Bearer"],
    )
    async def test_an_unknown_or_malformed_key_is_401(
        self, anonymous: httpx.AsyncClient, db, authorization: str
    ) -> None:
        response = await anonymous.post(
            "/v1/books", json=book_payload(), headers={"Authorization": authorization}
        )
        problem = assert_problem(response, 401)
        assert problem["error"] == "API_KEY_INVALID"
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert count_books(db) == 0

    async def test_a_revoked_key_is_401(
        self, anonymous: httpx.AsyncClient, key_of, books_database_url: str, db
    ) -> None:
        token = key_of(Role.ADMIN)
        first = await anonymous.post("/v1/books", json=book_payload(), headers=bearer(token))
        assert first.status_code == 201
        revoke_key([books_database_url], prefix=str(token_prefix(token)))
        response = await anonymous.post("/v1/books", json=book_payload(), headers=bearer(token))
        assert assert_problem(response, 401)["error"] == "API_KEY_INVALID"
        assert count_books(db) == 1

    @pytest.mark.parametrize("role", [Role.CLIENT, Role.DESK])
    @pytest.mark.parametrize(("method", "path", "body"), WRITES)
    async def test_a_key_of_another_role_is_403(
        self, anonymous: httpx.AsyncClient, make_book, key_of, role, method, path, body
    ) -> None:
        book = await make_book()
        token = key_of(role)
        response = await write(anonymous, method, path, body, book["id"], **bearer(token))
        problem = assert_problem(response, 403)
        assert problem["error"] == "API_KEY_FORBIDDEN"
        assert "admin" in problem["detail"]

    async def test_reads_are_public(self, anonymous: httpx.AsyncClient, make_book) -> None:
        book = await make_book()
        assert (await anonymous.get(f"/v1/books/{book['id']}")).status_code == 200
        assert (await anonymous.get("/v1/books")).json()["total"] == 1

    async def test_the_internal_api_wants_the_service_key_not_an_api_key(
        self, books_database_url: str, admin_key: str
    ) -> None:
        app = create_app(internal_settings(books_database_url))
        async with client_for(app, admin_key) as client:
            body = {"reference": "r-1", "lines": [{"book_id": 1, "quantity": 1}]}
            response = await client.post("/internal/v1/stock/reservations", json=body)
            assert_problem(response, 401)
        await close_databases(app)

    async def test_openapi_names_the_scheme_on_writes_only(
        self, anonymous: httpx.AsyncClient
    ) -> None:
        document = (await anonymous.get("/openapi.json")).json()
        assert document["components"]["securitySchemes"]["bearerAuth"] == {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer bsk_…`",
        }
        paths = document["paths"]
        for method, path, _ in WRITES:
            operation = paths[path.replace("{id}", "{book_id}")][method.lower()]
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "403", "429"} <= operation["responses"].keys()
        for path in ("/v1/books", "/v1/books/{book_id}"):
            assert "security" not in paths[path]["get"]
            assert "429" in paths[path]["get"]["responses"]


def limited_settings(database_url: str, **limits: Any) -> Settings:
    return Settings(database_url=database_url, **limits)


@pytest.fixture
def redis_db(redis_url: str) -> redis.Redis:
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    return connection


@pytest.fixture
async def strict_app(books_database_url: str, redis_db: redis.Redis) -> AsyncIterator[FastAPI]:
    """Books with limits low enough to reach: 3 reads a minute per IP, 2 calls per key."""
    app = create_app(
        internal_settings(
            books_database_url,
            rate_limit_anonymous="3/minute",
            rate_limit_admin="2/minute",
            rate_limit_client="2/minute",
        )
    )
    yield app
    await close_databases(app)


class TestRateLimits:
    async def test_an_ip_past_its_limit_gets_429_with_the_headers(
        self, strict_app: FastAPI
    ) -> None:
        async with client_for(strict_app) as visitor:
            for _ in range(3):
                assert (await visitor.get("/v1/books")).status_code == 200
            response = await visitor.get("/v1/books")
        problem = assert_problem(response, 429)
        assert problem["error"] == "RATE_LIMITED"
        retry_after = int(response.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert response.headers["ratelimit-policy"] == '"anonymous";q=3;w=60'
        assert response.headers["ratelimit"] == f'"anonymous";r=0;t={retry_after}'

    async def test_each_key_has_its_own_count(self, strict_app: FastAPI, key_of) -> None:
        first, second = key_of(Role.CLIENT), key_of(Role.CLIENT)
        async with client_for(strict_app, first) as one, client_for(strict_app, second) as two:
            assert [(await one.get("/v1/books")).status_code for _ in range(3)] == [200, 200, 429]
            assert (await two.get("/v1/books")).status_code == 200
        async with client_for(strict_app) as visitor:
            assert (await visitor.get("/v1/books")).status_code == 200  # the IP's count is apart

    async def test_a_bad_key_spends_the_ips_budget(self, strict_app: FastAPI) -> None:
        async with client_for(strict_app, new_token()) as guesser:
            assert [(await guesser.get("/v1/books")).status_code for _ in range(4)] == [
                401,
                401,
                401,
                429,
            ]

    async def test_the_limits_are_shared_by_every_process(
        self, strict_app: FastAPI, books_database_url: str
    ) -> None:
        """Two apps (two processes of one service) count in the same Redis."""
        other = create_app(internal_settings(books_database_url, rate_limit_anonymous="3/minute"))
        async with client_for(strict_app) as one, client_for(other) as two:
            statuses = [(await client.get("/v1/books")).status_code for client in (one, two) * 2]
        assert statuses == [200, 200, 200, 429]
        await close_databases(other)

    async def test_every_route_admits_its_requests(self, strict_app: FastAPI) -> None:
        """Admission (key and limit) is the route class's work: a route of another class
        would serve callers past their limit."""
        routes = [context.route for context in iter_route_contexts(strict_app.routes)]
        api_routes = [route for route in routes if isinstance(route, APIRoute)]
        assert len(api_routes) > 20
        assert [route.path for route in api_routes if not isinstance(route, BooksRoute)] == []

    async def test_a_caller_past_its_limit_is_refused_before_its_body_is_read(
        self, strict_app: FastAPI, key_of
    ) -> None:
        async with client_for(strict_app, key_of(Role.ADMIN)) as writer:
            for _ in range(2):
                assert (await writer.get("/v1/books")).status_code == 200
            response = await writer.patch(
                "/v1/books/1", content=b"{not json", headers={"Content-Type": "application/json"}
            )
        assert assert_problem(response, 429)["error"] == "RATE_LIMITED"

    async def test_internal_and_system_endpoints_are_not_limited(self, strict_app: FastAPI) -> None:
        async with client_for(strict_app) as caller:
            for _ in range(5):
                assert (await caller.get("/health")).status_code == 200
                body = {"reference": "order:0"}
                released = await caller.post(
                    "/internal/v1/stock/releases", json=body, headers=KEY_HEADER
                )
                assert released.status_code == 200

    async def test_reads_are_served_when_redis_is_down(
        self, books_database_url: str, make_book, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Fail open: no Redis, no limits; logged once, counted on every request."""
        book = await make_book()
        app = create_app(
            limited_settings(
                books_database_url,
                rate_limit_redis_url=f"redis://127.0.0.1:{free_port()}/0",
                rate_limit_anonymous="1/minute",
            )
        )
        before = REGISTRY.get_sample_value("rate_limit_unavailable_total") or 0
        async with client_for(app) as visitor:
            statuses = [(await visitor.get(f"/v1/books/{book['id']}")).status_code for _ in "abc"]
        await close_databases(app)
        assert statuses == [200, 200, 200]
        assert REGISTRY.get_sample_value("rate_limit_unavailable_total") == before + 3
        assert capsys.readouterr().out.count("rate limits not enforced") == 1


class TestKeysInTheDatabase:
    def test_no_token_is_stored(self, admin_key: str, db: psycopg.Connection[Any]) -> None:
        secret = admin_key.split("_", 2)[2]
        dump = str(db.execute("SELECT * FROM api_keys").fetchall())
        assert token_prefix(admin_key) in dump
        assert secret not in dump
        assert admin_key not in dump
