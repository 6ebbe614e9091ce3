from __future__ import annotations

import asyncio

import psycopg
import pytest

from orders.http import _query_names
from servicekit.pagination import link_header
from tests.conftest import assert_problem, order_body


@pytest.fixture
async def place_orders(client, make_book):  # type: ignore[no-untyped-def]
    """Factory: place `count` one-line orders and return their JSON, oldest first."""

    async def place(count: int, **extra: object) -> list[dict[str, object]]:
        book = await make_book()
        orders = []
        for _ in range(count):
            response = await client.post("/v1/orders", json=order_body((book["id"], 1), **extra))
            assert response.status_code == 201, response.text
            orders.append(response.json())
        return orders

    return place


class TestGetOrder:
    async def test_returns_the_order_as_created(self, client, place_orders):
        [order] = await place_orders(1)
        response = await client.get(f"/v1/orders/{order['id']}")
        assert response.status_code == 200
        assert response.json() == order

    async def test_missing_order_is_404(self, client):
        problem = assert_problem(await client.get("/v1/orders/424242"), 404)
        assert problem["type"] == "/problems/order-not-found"
        assert problem["instance"] == "/v1/orders/424242"

    @pytest.mark.parametrize("order_id", ["abc", "0", "-1", "9223372036854775808", "1.5"])
    async def test_bad_id_is_422(self, client, order_id):
        problem = assert_problem(await client.get(f"/v1/orders/{order_id}"), 422)
        assert problem["errors"][0]["field"] == "order_id"
        assert problem["errors"][0]["in"] == "path"


class TestListOrders:
    async def test_newest_first_with_envelope(self, client, place_orders):
        orders = await place_orders(3)
        response = await client.get("/v1/orders")
        assert response.status_code == 200
        body = response.json()
        assert body == {"data": orders[::-1], "total": 3, "limit": 50, "offset": 0}
        assert response.headers["x-total-count"] == "3"

    async def test_pages_with_link_header_like_books(self, client, place_orders):
        orders = await place_orders(5)
        response = await client.get("/v1/orders", params={"limit": 2, "offset": 2})
        body = response.json()
        assert [order["id"] for order in body["data"]] == [orders[2]["id"], orders[1]["id"]]
        assert response.headers["link"] == (
            '</v1/orders?limit=2&offset=0>; rel="first", '
            '</v1/orders?limit=2&offset=0>; rel="prev", '
            '</v1/orders?limit=2&offset=4>; rel="next", '
            '</v1/orders?limit=2&offset=4>; rel="last"'
        )

    async def test_links_keep_filters(self, client, place_orders):
        await place_orders(3, customer_id=7)
        response = await client.get(
            "/v1/orders", params={"customer_id": 7, "status": "pending", "limit": 1}
        )
        assert response.headers["link"] == link_header(
            "/v1/orders",
            [("customer_id", "7"), ("status", "pending")],
            total=3,
            limit=1,
            offset=0,
        )
        assert "customer_id=7&status=pending" in response.headers["link"]

    async def test_empty_page_past_the_end(self, client, place_orders):
        await place_orders(2)
        response = await client.get("/v1/orders", params={"limit": 20, "offset": 1000})
        assert response.json() == {"data": [], "total": 2, "limit": 20, "offset": 1000}
        assert 'rel="prev"' in response.headers["link"]
        assert 'rel="next"' not in response.headers["link"]

    async def test_limit_above_200_is_capped(self, client, place_orders):
        await place_orders(1)
        response = await client.get("/v1/orders", params={"limit": 1000})
        assert response.status_code == 200
        assert response.json()["limit"] == 200
        assert "limit=200" in response.headers["link"]

    async def test_filters_by_customer_and_status(self, client, place_orders, db):
        mine = await place_orders(2, customer_id=11)
        await place_orders(1, customer_id=12)
        db.execute("UPDATE orders SET status = 'confirmed' WHERE id = %s", (mine[0]["id"],))
        by_customer = (await client.get("/v1/orders", params={"customer_id": 11})).json()
        assert {order["id"] for order in by_customer["data"]} == {o["id"] for o in mine}
        confirmed = (await client.get("/v1/orders", params={"status": "confirmed"})).json()
        assert [order["id"] for order in confirmed["data"]] == [mine[0]["id"]]
        assert confirmed["total"] == 1

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"limit": 0}, "limit"),
            ({"limit": "x"}, "limit"),
            ({"offset": -1}, "offset"),
            ({"status": "shipped"}, "status"),
            ({"customer_id": 0}, "customer_id"),
        ],
    )
    async def test_rejects_bad_query(self, client, params, field):
        problem = assert_problem(await client.get("/v1/orders", params=params), 422)
        assert problem["errors"][0]["field"] == field
        assert problem["errors"][0]["in"] == "query"

    async def test_an_unknown_parameter_is_named_and_its_check_keeps_no_state_per_request(
        self, client
    ):
        """The guard that refuses unknown parameters caches each operation's names: one
        entry per operation however many requests, not one per request."""
        problem = assert_problem(await client.get("/v1/orders", params={"colour": "red"}), 422)
        assert problem["errors"][0]["field"] == "colour"
        assert problem["errors"][0]["in"] == "query"
        cached = _query_names.cache_info().currsize
        for _ in range(5):
            assert (await client.get("/v1/orders", params={"limit": 1})).status_code == 200
        assert _query_names.cache_info().currsize == cached


class TestCounts:
    async def test_totals_come_from_counters_that_agree_with_the_rows(
        self, client, place_orders, db
    ):
        orders = await place_orders(20)
        for order, status in zip(orders[:6], ["confirmed"] * 3 + ["cancelled"] * 3, strict=True):
            db.execute("UPDATE orders SET status = %s WHERE id = %s", (status, order["id"]))
        db.execute("UPDATE orders SET status = 'cancelled' WHERE id = %s", (orders[0]["id"],))
        counted = dict(db.execute("SELECT status, count(*) FROM orders GROUP BY 1").fetchall())
        kept = dict(
            db.execute(
                "SELECT status, sum(orders) FROM order_counts GROUP BY 1 HAVING sum(orders) > 0"
            )
        )
        assert kept == counted == {"pending": 14, "confirmed": 2, "cancelled": 4}
        response = await client.get("/v1/orders", params={"limit": 1})
        assert response.headers["x-total-count"] == "20"
        response = await client.get("/v1/orders", params={"status": "cancelled", "limit": 1})
        assert response.headers["x-total-count"] == "4"

    async def test_concurrent_writers_keep_the_counters_exact(self, client, make_book, db):
        """Orders placed and moved at once, on several connections: no deadlock on the
        counter rows, and the totals still agree with the rows."""
        book = await make_book()

        async def place() -> None:
            response = await client.post("/v1/orders", json=order_body((book["id"], 1)))
            assert response.status_code == 201, response.text

        await asyncio.gather(*(place() for _ in range(40)))

        def move(ids: list[int], status: str) -> None:
            with psycopg.connect(db.info.dsn, autocommit=True) as conn:
                for order_id in ids:
                    conn.execute("UPDATE orders SET status = %s WHERE id = %s", (status, order_id))

        ids = [row[0] for row in db.execute("SELECT id FROM orders ORDER BY id")]
        await asyncio.gather(
            asyncio.to_thread(move, ids[0::2], "confirmed"),
            asyncio.to_thread(move, ids[1::2], "cancelled"),
        )
        counted = dict(db.execute("SELECT status, count(*) FROM orders GROUP BY 1").fetchall())
        kept = dict(
            db.execute(
                "SELECT status, sum(orders) FROM order_counts GROUP BY 1 HAVING sum(orders) > 0"
            )
        )
        assert kept == counted == {"confirmed": 20, "cancelled": 20}
