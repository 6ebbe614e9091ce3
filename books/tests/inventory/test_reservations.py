"""POST /internal/v1/stock/reservations: all lines or none, and repeats replay the outcome."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import assert_problem
from tests.inventory.conftest import (
    KEY_HEADER,
    RESERVATIONS,
    lines,
    movements,
    reservations,
    stock_of,
)


class TestReserveStock:
    async def test_reserves_every_line(self, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
        first = await make_book(stock=10)
        second = await make_book(stock=3)
        response = await reserve("order:1", (first["id"], 2), (second["id"], 3))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "reference": "order:1",
            "status": "reserved",
            "lines": lines((first["id"], 2), (second["id"], 3)),
            "shortages": [],
        }
        assert (stock_of(db, first["id"]), stock_of(db, second["id"])) == (8, 0)
        assert movements(db) == [
            ("order:1", first["id"], "reserve", 2),
            ("order:1", second["id"], "reserve", 3),
        ]
        assert reservations(db) == {"order:1": "reserved"}

    async def test_answers_lines_in_book_id_order(self, make_book, reserve) -> None:  # type: ignore[no-untyped-def]
        first = await make_book(stock=5)
        second = await make_book(stock=5)
        response = await reserve("order:1", (second["id"], 1), (first["id"], 2))
        assert response.json()["lines"] == lines((first["id"], 2), (second["id"], 1))

    async def test_shows_the_new_stock_on_the_book(self, make_book, reserve, client) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=5)
        await reserve("order:1", (book["id"], 2))
        assert (await client.get(f"/v1/books/{book['id']}")).json()["stock"] == 3

    async def test_untracked_stock_is_always_reserved_and_stays_untracked(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db
    ) -> None:
        untracked = await make_book()
        tracked = await make_book(stock=1)
        response = await reserve("order:1", (untracked["id"], 10_000), (tracked["id"], 1))
        assert response.json()["status"] == "reserved"
        assert (stock_of(db, untracked["id"]), stock_of(db, tracked["id"])) == (None, 0)
        assert movements(db) == [("order:1", tracked["id"], "reserve", 1)]

    async def test_untracked_book_is_left_unchanged(self, make_book, reserve, client) -> None:  # type: ignore[no-untyped-def]
        untracked = await make_book()
        await reserve("order:1", (untracked["id"], 3))
        assert (await client.get(f"/v1/books/{untracked['id']}")).json() == untracked

    async def test_takes_the_last_copies(self, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=4)
        assert (await reserve("order:1", (book["id"], 4))).json()["status"] == "reserved"
        assert stock_of(db, book["id"]) == 0


class TestRejectedReservation:
    async def test_one_short_line_reserves_nothing(self, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
        plenty = await make_book(stock=10)
        scarce = await make_book(stock=1)
        untracked = await make_book()
        response = await reserve(
            "order:1", (plenty["id"], 2), (scarce["id"], 3), (untracked["id"], 1)
        )
        assert response.status_code == 200
        assert response.json() == {
            "reference": "order:1",
            "status": "rejected",
            "lines": lines((plenty["id"], 2), (scarce["id"], 3), (untracked["id"], 1)),
            "shortages": [
                {
                    "book_id": scarce["id"],
                    "requested": 3,
                    "available": 1,
                    "reason": "insufficient_stock",
                }
            ],
        }
        assert [stock_of(db, book["id"]) for book in (plenty, scarce, untracked)] == [10, 1, None]
        assert movements(db) == []
        assert reservations(db) == {"order:1": "rejected"}

    async def test_lists_every_short_line(self, make_book, reserve) -> None:  # type: ignore[no-untyped-def]
        empty = await make_book(stock=0)
        scarce = await make_book(stock=2)
        response = await reserve("order:1", (empty["id"], 1), (scarce["id"], 5))
        assert [(s["book_id"], s["available"]) for s in response.json()["shortages"]] == [
            (empty["id"], 0),
            (scarce["id"], 2),
        ]

    async def test_missing_book(self, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=5)
        response = await reserve("order:1", (book["id"], 1), (999, 1))
        assert response.json()["status"] == "rejected"
        assert response.json()["shortages"] == [
            {"book_id": 999, "requested": 1, "available": 0, "reason": "book_not_found"}
        ]
        assert stock_of(db, book["id"]) == 5

    async def test_inactive_book(self, make_book, reserve, client, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=5)
        await client.delete(f"/v1/books/{book['id']}")
        response = await reserve("order:1", (book["id"], 1))
        assert response.json()["shortages"] == [
            {"book_id": book["id"], "requested": 1, "available": 0, "reason": "book_inactive"}
        ]
        assert stock_of(db, book["id"]) == 5

    async def test_inactive_untracked_book(self, make_book, reserve, client) -> None:  # type: ignore[no-untyped-def]
        book = await make_book()
        await client.delete(f"/v1/books/{book['id']}")
        response = await reserve("order:1", (book["id"], 1))
        assert response.json()["shortages"][0]["reason"] == "book_inactive"


class TestRepeatedReservation:
    async def test_replays_a_reservation_without_taking_stock_again(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db
    ) -> None:
        book = await make_book(stock=10)
        first = await reserve("order:1", (book["id"], 4))
        again = await reserve("order:1", (book["id"], 4))
        assert again.status_code == 200
        assert again.json() == first.json()
        assert stock_of(db, book["id"]) == 6
        assert len(movements(db)) == 1

    async def test_lines_in_another_order_are_the_same_request(
        self, make_book, reserve, db
    ) -> None:  # type: ignore[no-untyped-def]
        first = await make_book(stock=10)
        second = await make_book(stock=10)
        await reserve("order:1", (first["id"], 1), (second["id"], 2))
        again = await reserve("order:1", (second["id"], 2), (first["id"], 1))
        assert again.json()["status"] == "reserved"
        assert (stock_of(db, first["id"]), stock_of(db, second["id"])) == (9, 8)

    async def test_replays_a_rejection_even_when_stock_came_in(  # type: ignore[no-untyped-def]
        self, make_book, reserve, client, db
    ) -> None:
        book = await make_book(stock=1)
        first = await reserve("order:1", (book["id"], 3))
        await client.patch(f"/v1/books/{book['id']}", json={"stock": 10})
        again = await reserve("order:1", (book["id"], 3))
        assert again.json() == first.json()
        assert again.json()["status"] == "rejected"
        assert stock_of(db, book["id"]) == 10
        assert movements(db) == []

    async def test_other_lines_under_a_used_reference_are_409(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db
    ) -> None:
        book = await make_book(stock=10)
        await reserve("order:1", (book["id"], 1))
        problem = assert_problem(await reserve("order:1", (book["id"], 2)), 409)
        assert problem["type"] == "/problems/reference-reused"
        assert "order:1" in problem["detail"]
        assert stock_of(db, book["id"]) == 9
        assert len(movements(db)) == 1

    async def test_after_a_release_reports_released(self, make_book, reserve, release, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=10)
        await reserve("order:1", (book["id"], 2))
        await release("order:1")
        again = await reserve("order:1", (book["id"], 2))
        assert again.json()["status"] == "released"
        assert stock_of(db, book["id"]) == 10


class TestReservationValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"lines": lines((1, 1))}, "reference"),
            ({"reference": "order:1"}, "lines"),
            ({"reference": "order:1", "lines": []}, "lines"),
            ({"reference": "order:1", "lines": lines(*[(n, 1) for n in range(1, 102)])}, "lines"),
            ({"reference": "Order:1", "lines": lines((1, 1))}, "reference"),
            ({"reference": "order", "lines": lines((1, 1))}, "reference"),
            ({"reference": "order:", "lines": lines((1, 1))}, "reference"),
            ({"reference": "order:1 ", "lines": lines((1, 1))}, "reference"),
            ({"reference": "order:" + "x" * 65, "lines": lines((1, 1))}, "reference"),
            ({"reference": 1, "lines": lines((1, 1))}, "reference"),
            ({"reference": "order:1", "lines": lines((1, 0))}, "lines[0].quantity"),
            ({"reference": "order:1", "lines": lines((1, 10_001))}, "lines[0].quantity"),
            ({"reference": "order:1", "lines": lines((0, 1))}, "lines[0].book_id"),
            ({"reference": "order:1", "lines": lines((2**63, 1))}, "lines[0].book_id"),
            (
                {"reference": "order:1", "lines": [{"book_id": 1, "quantity": "2"}]},
                "lines[0].quantity",
            ),
            (
                {"reference": "order:1", "lines": [{"book_id": 1, "quantity": True}]},
                "lines[0].quantity",
            ),
            (
                {"reference": "order:1", "lines": [{"book_id": 1, "quantity": 1.5}]},
                "lines[0].quantity",
            ),
            (
                {"reference": "order:1", "lines": [{"book_id": 1, "quantity": 1, "x": 1}]},
                "lines[0].x",
            ),
            ({"reference": "order:1", "lines": lines((1, 1)), "note": "x"}, "note"),
            ({"reference": "order:1", "lines": lines((1, 1), (1, 2))}, "body"),
        ],
    )
    async def test_rejects_bad_bodies_and_writes_nothing(  # type: ignore[no-untyped-def]
        self, client: httpx.AsyncClient, make_book, db: psycopg.Connection[Any], body, field
    ) -> None:
        book = await make_book(stock=5)
        response = await client.post(RESERVATIONS, json=body, headers=KEY_HEADER)
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == [field]
        assert reservations(db) == {}
        assert stock_of(db, book["id"]) == 5

    async def test_duplicate_book_ids_say_why(self, client: httpx.AsyncClient) -> None:
        body = {"reference": "order:1", "lines": lines((1, 1), (1, 2))}
        problem = assert_problem(
            await client.post(RESERVATIONS, json=body, headers=KEY_HEADER), 422
        )
        assert "only one line" in problem["errors"][0]["message"]

    async def test_rejects_other_media_types(self, client: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
        response = await client.post(RESERVATIONS, content=b"reference=order:1", headers=KEY_HEADER)
        assert_problem(response, 415)
        assert reservations(db) == {}

    async def test_rejects_malformed_json(self, client: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
        response = await client.post(
            RESERVATIONS,
            content=b'{"reference": ',
            headers={**KEY_HEADER, "content-type": "application/json"},
        )
        assert_problem(response, 422)
        assert reservations(db) == {}
