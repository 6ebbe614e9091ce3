from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from devstack.services import ServiceProcess
from tests.conftest import assert_nothing_written, assert_problem, order_body


class TestCreateOrder:
    async def test_creates_pending_order_with_location(self, client, make_book):
        book = await make_book(price="19.99")
        response = await client.post("/v1/orders", json=order_body((book["id"], 2)))
        assert response.status_code == 201, response.text
        order = response.json()
        assert response.headers["location"] == f"/v1/orders/{order['id']}"
        assert response.headers["content-type"] == "application/json"
        assert order["status"] == "pending"
        assert order["total_price"] == "39.98"
        assert order["created_at"].endswith("Z")
        [item] = order["items"]
        assert item == {
            "id": item["id"],
            "order_id": order["id"],
            "book_id": book["id"],
            "book_title": book["title"],
            "book_author": book["author"],
            "quantity": 2,
            "unit_price": "19.99",
            "total_price": "39.98",
            "created_at": item["created_at"],
        }

    async def test_multiple_books_sum_exactly(self, client, make_book):
        first = await make_book(price="19.99")
        second = await make_book(title="1984", author="George Orwell", price="0.10")
        third = await make_book(price="5.00")
        response = await client.post(
            "/v1/orders",
            json=order_body((first["id"], 2), (second["id"], 3), (third["id"], 1)),
        )
        assert response.status_code == 201, response.text
        order = response.json()
        assert order["total_price"] == "45.28"
        assert [line["total_price"] for line in order["items"]] == ["39.98", "0.30", "5.00"]
        assert [line["book_title"] for line in order["items"]][1] == "1984"

    async def test_stores_customer_id(self, client, make_book, db):
        book = await make_book()
        response = await client.post("/v1/orders", json=order_body((book["id"], 1), customer_id=42))
        assert response.status_code == 201, response.text
        assert response.json()["customer_id"] == 42
        assert db.execute("SELECT customer_id FROM orders").fetchone() == (42,)

    async def test_writes_order_placed_outbox_event(self, client, make_book, db):
        book = await make_book(price="7.50")
        response = await client.post(
            "/v1/orders", json=order_body((book["id"], 4)), headers={"X-Request-ID": "req-outbox-1"}
        )
        order = response.json()
        rows = db.execute("SELECT topic, payload, request_id, delivered_at FROM outbox").fetchall()
        assert rows == [
            (
                "order.placed",
                {"order_id": order["id"], "lines": [{"book_id": book["id"], "quantity": 4}]},
                "req-outbox-1",
                None,
            )
        ]

    async def test_stores_numeric_amounts(self, client, make_book, db):
        book = await make_book(price="0.01")
        await client.post("/v1/orders", json=order_body((book["id"], 10_000)))
        assert db.execute("SELECT total_price FROM orders").fetchone() == (Decimal("100.00"),)
        assert db.execute("SELECT unit_price, total_price FROM order_items").fetchone() == (
            Decimal("0.01"),
            Decimal("100.00"),
        )

    async def test_largest_possible_order_fits(self, client, make_book, db):
        """100 lines of 10,000 books at the highest price a book may have."""
        books = [await make_book(price="99999999.99") for _ in range(100)]
        response = await client.post(
            "/v1/orders", json=order_body(*[(book["id"], 10_000) for book in books])
        )
        assert response.status_code == 201, response.text
        assert response.json()["total_price"] == "99999999990000.00"
        assert db.execute("SELECT total_price FROM orders").fetchone() == (
            Decimal("99999999990000.00"),
        )

    async def test_later_price_change_keeps_the_snapshot(self, client, books, make_book):
        book = await make_book(price="19.99", title="Old title")
        order = (await client.post("/v1/orders", json=order_body((book["id"], 1)))).json()
        changed = await books.patch(
            f"/v1/books/{book['id']}", json={"price": "25.00", "title": "New title"}
        )
        assert changed.status_code == 200
        fetched = (await client.get(f"/v1/orders/{order['id']}")).json()
        assert fetched == order
        assert fetched["items"][0]["book_title"] == "Old title"

    async def test_forwards_request_id_to_books(
        self, client, make_book, books_service: ServiceProcess
    ):
        book = await make_book()
        response = await client.post(
            "/v1/orders", json=order_body((book["id"], 1)), headers={"X-Request-ID": "trace-7f3a9"}
        )
        assert response.status_code == 201
        assert response.headers["x-request-id"] == "trace-7f3a9"
        assert '"request_id": "trace-7f3a9"' in books_service.output()


VALID = order_body((1, 1))
BAD_BODIES: list[tuple[str, Any, str]] = [
    ("no items", {"items": []}, "items"),
    ("too many items", order_body(*[(i, 1) for i in range(1, 102)]), "items"),
    ("missing items", {}, "items"),
    ("zero book id", order_body((0, 1)), "items[0].book_id"),
    ("negative book id", order_body((-3, 1)), "items[0].book_id"),
    ("huge book id", order_body((2**63, 1)), "items[0].book_id"),
    ("string book id", {"items": [{"book_id": "1", "quantity": 1}]}, "items[0].book_id"),
    ("float quantity", {"items": [{"book_id": 1, "quantity": 1.5}]}, "items[0].quantity"),
    ("zero quantity", order_body((1, 0)), "items[0].quantity"),
    ("quantity above 10000", order_body((1, 10_001)), "items[0].quantity"),
    ("missing quantity", {"items": [{"book_id": 1}]}, "items[0].quantity"),
    ("unknown top-level field", {**VALID, "coupon": "X"}, "coupon"),
    ("unknown item field", {"items": [{"book_id": 1, "quantity": 1, "x": 1}]}, "items[0].x"),
    ("items not a list", {"items": {"book_id": 1}}, "items"),
    ("zero customer id", {**VALID, "customer_id": 0}, "customer_id"),
    ("duplicate book ids", order_body((1, 1), (2, 1), (1, 3)), "items[2].book_id"),
]


class TestCreateOrderValidation:
    @pytest.mark.parametrize(
        ("body", "field"), [(b, f) for _, b, f in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES]
    )
    async def test_rejects_bad_body(self, client, db, body, field):
        response = await client.post("/v1/orders", json=body)
        problem = assert_problem(response, 422)
        assert problem["type"] == "/problems/validation-error"
        assert field in [error["field"] for error in problem["errors"]]
        assert all(error["in"] == "body" for error in problem["errors"])
        assert_nothing_written(db)

    async def test_duplicate_book_ids_are_named(self, client, db):
        body = order_body((5, 1), (9, 1), (5, 2), (9, 4), (5, 1))
        problem = assert_problem(await client.post("/v1/orders", json=body), 422)
        assert problem["type"] == "/problems/validation-error"
        assert [(error["field"], error["message"]) for error in problem["errors"]] == [
            ("items[2].book_id", "book 5 is already on line 0; put its whole quantity on one line"),
            ("items[3].book_id", "book 9 is already on line 1; put its whole quantity on one line"),
            ("items[4].book_id", "book 5 is already on line 0; put its whole quantity on one line"),
        ]
        assert_nothing_written(db)

    async def test_rejects_malformed_json(self, client, db):
        response = await client.post(
            "/v1/orders", content=b'{"items": [', headers={"content-type": "application/json"}
        )
        assert_problem(response, 422)
        assert_nothing_written(db)

    async def test_rejects_null_body(self, client, db):
        response = await client.post(
            "/v1/orders", content=b"null", headers={"content-type": "application/json"}
        )
        assert assert_problem(response, 422)["errors"][0]["field"] == "body"
        assert_nothing_written(db)

    async def test_rejects_empty_body(self, client, db):
        response = await client.post(
            "/v1/orders", content=b"", headers={"content-type": "application/json"}
        )
        assert_problem(response, 422)
        assert_nothing_written(db)

    async def test_rejects_non_json_content_type(self, client, db):
        response = await client.post(
            "/v1/orders",
            content=b'{"items":[{"book_id":1,"quantity":1}]}',
            headers={"content-type": "text/plain"},
        )
        assert_problem(response, 415)
        assert_nothing_written(db)

    @pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve"])
    async def test_rejects_bad_idempotency_key(self, client, db, make_book, key):
        book = await make_book()
        response = await client.post(
            "/v1/orders",
            json=order_body((book["id"], 1)),
            headers={"Idempotency-Key": key.encode()},
        )
        problem = assert_problem(response, 422)
        assert problem["errors"][0] == {
            "field": "Idempotency-Key",
            "in": "header",
            "message": problem["errors"][0]["message"],
        }
        assert_nothing_written(db)


class TestCreateOrderUnknownBooks:
    async def test_names_every_missing_and_deleted_book(self, client, books, make_book, db):
        kept = await make_book()
        deleted = await make_book()
        assert (await books.delete(f"/v1/books/{deleted['id']}")).status_code == 200
        missing = 987654
        response = await client.post(
            "/v1/orders",
            json=order_body((kept["id"], 1), (missing, 1), (deleted["id"], 2)),
        )
        problem = assert_problem(response, 422)
        assert problem["type"] == "/problems/unknown-books"
        assert str(missing) in problem["detail"]
        assert str(deleted["id"]) in problem["detail"]
        assert problem["errors"] == [
            {
                "field": "items[1].book_id",
                "in": "body",
                "message": f"book {missing} does not exist or is no longer sold",
            },
            {
                "field": "items[2].book_id",
                "in": "body",
                "message": f"book {deleted['id']} does not exist or is no longer sold",
            },
        ]
        assert_nothing_written(db)
