"""`POST /internal/v1/copies/checkouts`: a reference takes at most one copy."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import KEY_HEADER, assert_problem
from tests.lending.conftest import CHECKOUTS, assert_ledger_balances, copies_of, loans


class TestCheckOut:
    async def test_takes_a_copy_off_the_shelf(self, make_book, checkout, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=2)
        assert await checkout("borrow:1", book["id"]) == "checked_out"
        assert copies_of(db, book["id"]) == (2, 1)
        assert loans(db) == {"borrow:1": (book["id"], "out", None)}
        assert_ledger_balances(db)

    async def test_leaves_the_stock_alone(self, make_book, checkout, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=2, stock=5)
        await checkout("hold:1", book["id"])
        row = db.execute("SELECT stock FROM books WHERE id = %s", (book["id"],)).fetchone()
        assert row == (5,)

    async def test_shows_on_the_book(self, make_book, checkout, client) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        shown = (await client.get(f"/v1/books/{book['id']}")).json()
        assert (shown["copies_total"], shown["copies_available"]) == (2, 1)
        assert shown["updated_at"] > book["updated_at"]

    async def test_a_repeat_takes_nothing_more(self, make_book, checkout, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=3)
        assert [await checkout("borrow:1", book["id"]) for _ in range(3)] == ["checked_out"] * 3
        assert copies_of(db, book["id"]) == (3, 2)
        assert len(loans(db)) == 1

    async def test_after_a_checkin_answers_checked_in(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        await checkin("borrow:1")
        assert await checkout("borrow:1", book["id"]) == "checked_in"
        assert copies_of(db, book["id"]) == (1, 1)

    async def test_after_a_transfer_answers_passed_on(  # type: ignore[no-untyped-def]
        self, make_book, checkout, transfer, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        await transfer("borrow:1", "hold:1")
        assert await checkout("borrow:1", book["id"]) == "passed_on"
        assert copies_of(db, book["id"]) == (1, 0)

    async def test_no_copy_on_the_shelf_is_unavailable_and_stores_nothing(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        assert await checkout("borrow:2", book["id"]) == "unavailable"
        assert set(loans(db)) == {"borrow:1"}
        await checkin("borrow:1")
        assert await checkout("borrow:2", book["id"]) == "checked_out"

    @pytest.mark.parametrize("overrides", [{}, {"copies_total": 0}])
    async def test_refusals_take_nothing(  # type: ignore[no-untyped-def]
        self, make_book, checkout, db, overrides
    ) -> None:
        book = await make_book(**overrides)
        expected = "unavailable" if overrides else "not_lendable"
        assert await checkout("borrow:1", book["id"]) == expected
        assert loans(db) == {}
        assert copies_of(db, book["id"]) == (overrides.get("copies_total"),) * 2

    async def test_missing_book(self, checkout, db) -> None:  # type: ignore[no-untyped-def]
        assert await checkout("borrow:1", 999) == "book_not_found"
        assert loans(db) == {}

    async def test_deleted_book_is_refused(self, make_book, checkout, client, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=2)
        await client.delete(f"/v1/books/{book['id']}")
        assert await checkout("borrow:1", book["id"]) == "book_inactive"
        assert loans(db) == {}
        assert copies_of(db, book["id"]) == (2, 2)

    async def test_a_reference_cannot_take_another_book(  # type: ignore[no-untyped-def]
        self, make_book, checkout, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        first = await make_book(copies_total=1)
        second = await make_book(copies_total=1)
        await checkout("borrow:1", first["id"])
        body = {"reference": "borrow:1", "book_id": second["id"]}
        problem = assert_problem(await client.post(CHECKOUTS, json=body, headers=KEY_HEADER), 409)
        assert problem["detail"] == (
            f"borrow:1 already took a copy of book {first['id']}; "
            f"it cannot take one of book {second['id']}."
        )
        assert copies_of(db, second["id"]) == (1, 1)


class TestCheckoutValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"reference": "order:1", "book_id": 1}, "reference"),
            ({"reference": "borrow:", "book_id": 1}, "reference"),
            ({"reference": "borrow:12345678901234567890", "book_id": 1}, "reference"),
            ({"reference": "borrow:1 ", "book_id": 1}, "reference"),
            ({"reference": "borrow:1", "book_id": "1"}, "book_id"),
            ({"reference": "borrow:1", "book_id": True}, "book_id"),
            ({"reference": "borrow:1", "book_id": 0}, "book_id"),
            ({"reference": "borrow:1", "book_id": 2**63}, "book_id"),
            ({"reference": "borrow:1"}, "book_id"),
            ({"reference": "borrow:1", "book_id": 1, "quantity": 1}, "quantity"),
        ],
    )
    async def test_rejects_bad_bodies_and_writes_nothing(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any], body: Any, field: str
    ) -> None:
        problem = assert_problem(await client.post(CHECKOUTS, json=body, headers=KEY_HEADER), 422)
        assert [error["field"] for error in problem["errors"]] == [field]
        assert loans(db) == {}

    async def test_rejects_other_media_types(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            CHECKOUTS, content=b"reference=borrow:1&book_id=1", headers=KEY_HEADER
        )
        assert_problem(response, 415)
