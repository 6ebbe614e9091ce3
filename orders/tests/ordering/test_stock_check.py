"""The stock pre-check at creation: a clear 409 at once instead of a later rejection."""

from __future__ import annotations

import pytest

from tests.conftest import assert_nothing_written, assert_problem, order_body


class TestStockPreCheck:
    async def test_asking_for_more_than_the_stock_is_409_naming_the_book(
        self, client, make_book, db
    ):
        book = await make_book(stock=1)
        response = await client.post("/v1/orders", json=order_body((book["id"], 3)))
        problem = assert_problem(response, 409)
        assert problem["type"] == "/problems/insufficient-stock"
        assert problem["detail"] == (
            "Not enough stock, so nothing was ordered:"
            f" book {book['id']}: requested 3, available 1."
        )
        assert problem["errors"] == [
            {
                "field": "items[0].quantity",
                "in": "body",
                "message": f"book {book['id']}: requested 3, available 1",
            }
        ]
        assert_nothing_written(db)

    async def test_names_every_short_line_and_only_those(self, client, make_book, db):
        short = await make_book(stock=0)
        plenty = await make_book(stock=10)
        untracked = await make_book(stock=None)
        also_short = await make_book(stock=2)
        response = await client.post(
            "/v1/orders",
            json=order_body(
                (plenty["id"], 10), (short["id"], 1), (untracked["id"], 500), (also_short["id"], 3)
            ),
        )
        problem = assert_problem(response, 409)
        assert [(e["field"], e["message"]) for e in problem["errors"]] == [
            ("items[1].quantity", f"book {short['id']}: requested 1, available 0"),
            ("items[3].quantity", f"book {also_short['id']}: requested 3, available 2"),
        ]
        assert_nothing_written(db)

    @pytest.mark.parametrize(("stock", "quantity"), [(3, 3), (None, 10_000)])
    async def test_enough_or_untracked_stock_places_the_order(
        self, client, make_book, stock, quantity
    ):
        book = await make_book(stock=stock)
        response = await client.post("/v1/orders", json=order_body((book["id"], quantity)))
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"

    async def test_does_not_reserve_anything(self, client, books, make_book):
        """The pre-check only reads; the workers' reservation is what takes stock."""
        book = await make_book(stock=5)
        await client.post("/v1/orders", json=order_body((book["id"], 5)))
        assert (await books.get(f"/v1/books/{book['id']}")).json()["stock"] == 5

    async def test_a_refusal_is_not_replayed_under_the_same_key(self, client, books, make_book, db):
        """Nothing was stored for the key, so a retry once stock is back places the order."""
        book = await make_book(stock=1)
        body = order_body((book["id"], 2))
        headers = {"Idempotency-Key": "stock-key-1"}
        assert_problem(await client.post("/v1/orders", json=body, headers=headers), 409)
        assert_nothing_written(db)
        restocked = await books.patch(f"/v1/books/{book['id']}", json={"stock": 2})
        assert restocked.status_code == 200, restocked.text
        response = await client.post("/v1/orders", json=body, headers=headers)
        assert response.status_code == 201, response.text

    async def test_is_counted(self, client, make_book):
        book = await make_book(stock=0)
        await client.post("/v1/orders", json=order_body((book["id"], 1)))
        text = (await client.get("/metrics")).text
        assert 'orders_created_total{outcome="insufficient_stock"}' in text
