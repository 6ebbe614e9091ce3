"""Every public call of orders needs a key, of a role allowed to make it; every key has a
rate limit in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis
from litestar import Litestar

from orders.app import create_app
from servicekit.api_keys import Role
from tests.conftest import (
    asgi_client,
    assert_nothing_written,
    assert_problem,
    order_body,
    orders_settings,
    serving,
)

MEMBER = {"name": "Ada", "email": "ada@example.org"}


@pytest.fixture
async def desk(orders_app: Litestar, key_of) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """The orders API as the library's desk calls it (a desk key)."""
    async with asgi_client(orders_app, key_of(Role.DESK)) as client:
        yield client


class TestWhoMayCallWhat:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/orders"),
            ("GET", "/v1/orders/1"),
            ("POST", "/v1/orders"),
            ("POST", "/v1/orders/1/cancel"),
            ("GET", "/v1/members"),
            ("POST", "/v1/borrows"),
            ("GET", "/v1/holds"),
            ("GET", "/v1/library/summary"),
        ],
    )
    async def test_without_a_key_is_401(self, anonymous, db, method, path) -> None:
        response = await anonymous.request(method, path, json=order_body((1, 1)))
        problem = assert_problem(response, 401)
        assert problem["error"] == "API_KEY_REQUIRED"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_nothing_written(db)

    async def test_a_shop_places_and_reads_its_orders(self, shop, make_book) -> None:
        book = await make_book()
        placed = await shop.post("/v1/orders", json=order_body((book["id"], 1)))
        assert placed.status_code == 201, placed.text
        assert (await shop.get(placed.headers["location"])).status_code == 200
        assert (await shop.get("/v1/orders")).json()["total"] == 1

    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", "/v1/members"), ("GET", "/v1/members"), ("GET", "/v1/library/summary")],
    )
    async def test_a_shop_may_not_run_the_library(self, shop, db, method, path) -> None:
        response = await shop.request(method, path, json=MEMBER)
        problem = assert_problem(response, 403)
        assert problem["error"] == "API_KEY_FORBIDDEN"
        assert_nothing_written(db)

    async def test_the_desk_runs_the_library_but_not_the_shop(self, desk, db) -> None:
        assert (await desk.post("/v1/members", json=MEMBER)).status_code == 201
        assert (await desk.get("/v1/library/summary")).status_code == 200
        response = await desk.post("/v1/orders", json=order_body((1, 1)))
        assert assert_problem(response, 403)["error"] == "API_KEY_FORBIDDEN"

    async def test_a_shop_borrows_for_a_member_the_desk_takes_it_back(
        self, client, shop, desk, make_book
    ) -> None:
        book = await make_book(copies_total=1)
        member = (await client.post("/v1/members", json=MEMBER)).json()
        body = {"member_id": member["id"], "book_id": book["id"]}
        borrow = await shop.post("/v1/borrows", json=body)
        assert borrow.status_code == 201, borrow.text
        assert (await shop.get(f"/v1/borrows/{borrow.json()['id']}")).status_code == 200
        returned = await shop.post(f"/v1/borrows/{borrow.json()['id']}/return")
        assert assert_problem(returned, 403)["error"] == "API_KEY_FORBIDDEN"

    async def test_the_key_is_checked_first_then_the_query_then_the_role(
        self, orders_app, anonymous, desk
    ) -> None:
        """A request wrong in several ways gets the first problem of: a bad key (401), an
        unknown query parameter (422), a role that may not (403), a missing key (401)."""
        unknown = {"colour": "red"}
        async with asgi_client(orders_app, "bsk_000000000000_" + "x" * 43) as guesser:
            response = await guesser.get("/v1/orders", params=unknown)
        assert assert_problem(response, 401)["error"] == "API_KEY_INVALID"
        for caller in (desk, anonymous):
            problem = assert_problem(await caller.get("/v1/orders", params=unknown), 422)
            assert problem["errors"][0]["field"] == "colour"
        assert assert_problem(await desk.get("/v1/orders"), 403)["error"] == "API_KEY_FORBIDDEN"
        assert assert_problem(await anonymous.get("/v1/orders"), 401)["error"] == "API_KEY_REQUIRED"

    async def test_openapi_puts_the_scheme_on_every_public_operation(self, anonymous) -> None:
        document = (await anonymous.get("/docs/openapi.json")).json()
        assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        for path, operations in document["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for method, operation in operations.items():
                assert operation["security"] == [{"bearerAuth": []}], (method, path)
                assert {"401", "403", "429"} <= operation["responses"].keys(), (method, path)


class TestRateLimits:
    async def test_a_key_past_its_limit_gets_429(
        self, orders_database_url, books_service, redis_url, shop_key
    ) -> None:
        redis.Redis.from_url(redis_url).flushdb()
        app = create_app(
            orders_settings(orders_database_url, books_service.url, rate_limit_client="2/minute")
        )
        async with serving(app), asgi_client(app, shop_key) as shop:
            statuses = [(await shop.get("/v1/orders")).status_code for _ in range(3)]
            response = await shop.get("/v1/orders")
        assert statuses == [200, 200, 429]
        assert assert_problem(response, 429)["error"] == "RATE_LIMITED"
        assert response.headers["ratelimit-policy"] == '"client";q=2;w=60'
        assert int(response.headers["retry-after"]) >= 1
