"""`POST /internal/v1/copies/checkins`: a reference's copy goes back on the shelf once."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import KEY_HEADER, assert_problem
from tests.lending.conftest import CHECKINS, assert_ledger_balances, copies_of, loans


class TestCheckIn:
    async def test_puts_the_copy_back(self, make_book, checkout, checkin, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        assert await checkin("borrow:1") == "checked_in"
        assert copies_of(db, book["id"]) == (2, 2)
        assert loans(db) == {"borrow:1": (book["id"], "in", None)}
        assert_ledger_balances(db)

    async def test_answers_the_book(self, make_book, checkout, client) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        response = await client.post(CHECKINS, json={"reference": "borrow:1"}, headers=KEY_HEADER)
        assert response.json() == {
            "reference": "borrow:1",
            "book_id": book["id"],
            "status": "checked_in",
        }

    async def test_a_repeat_gives_back_nothing_more(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, db
    ) -> None:
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        await checkout("borrow:2", book["id"])
        assert [await checkin("borrow:1") for _ in range(3)] == ["checked_in"] * 3
        assert copies_of(db, book["id"]) == (2, 1)

    async def test_unknown_reference_is_not_checked_out(self, checkin, db) -> None:  # type: ignore[no-untyped-def]
        assert await checkin("borrow:1") == "not_checked_out"
        assert loans(db) == {}

    async def test_a_passed_copy_is_not_put_back(  # type: ignore[no-untyped-def]
        self, make_book, checkout, transfer, checkin, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        await transfer("borrow:1", "hold:1")
        assert await checkin("borrow:1") == "passed_on"
        assert copies_of(db, book["id"]) == (1, 0)
        assert await checkin("hold:1") == "checked_in"
        assert copies_of(db, book["id"]) == (1, 1)

    async def test_a_deleted_book_takes_its_copy_back(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, client, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        await client.delete(f"/v1/books/{book['id']}")
        assert await checkin("borrow:1") == "checked_in"
        assert copies_of(db, book["id"]) == (1, 1)

    @pytest.mark.parametrize(
        "body", [{}, {"reference": "hold:x"}, {"reference": "borrow:1", "book_id": 1}]
    )
    async def test_rejects_bad_bodies(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any], body: Any
    ) -> None:
        assert_problem(await client.post(CHECKINS, json=body, headers=KEY_HEADER), 422)
