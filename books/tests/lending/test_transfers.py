"""`POST /internal/v1/copies/transfers`: a copy changes hands without touching the shelf."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import KEY_HEADER, assert_problem
from tests.lending.conftest import TRANSFERS, assert_ledger_balances, copies_of, loans


class TestTransfer:
    async def test_hands_the_copy_on(self, make_book, checkout, transfer, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        response = await transfer("borrow:1", "hold:5")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "from_reference": "borrow:1",
            "to_reference": "hold:5",
            "book_id": book["id"],
            "status": "transferred",
        }
        assert copies_of(db, book["id"]) == (2, 1)
        assert loans(db) == {
            "borrow:1": (book["id"], "passed", "hold:5"),
            "hold:5": (book["id"], "out", None),
        }
        assert_ledger_balances(db)

    async def test_a_repeat_answers_transferred_and_moves_nothing(  # type: ignore[no-untyped-def]
        self, make_book, checkout, transfer, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        first = await transfer("borrow:1", "hold:5")
        again = await transfer("borrow:1", "hold:5")
        assert again.json() == first.json()
        assert len(loans(db)) == 2

    async def test_is_still_transferred_after_the_new_holder_returned_it(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, transfer, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("hold:5", book["id"])
        await transfer("hold:5", "borrow:9")
        await checkin("borrow:9")
        assert (await transfer("hold:5", "borrow:9")).json()["status"] == "transferred"
        assert copies_of(db, book["id"]) == (1, 1)

    async def test_chains_hold_to_loan(self, make_book, checkout, checkin, transfer, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        await transfer("borrow:1", "hold:2")
        await transfer("hold:2", "borrow:3")
        assert copies_of(db, book["id"]) == (1, 0)
        assert await checkin("borrow:3") == "checked_in"
        assert copies_of(db, book["id"]) == (1, 1)
        assert_ledger_balances(db)

    @pytest.mark.parametrize("before", ["nothing", "checkin", "other transfer"])
    async def test_without_a_copy_is_not_checked_out(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, transfer, db, before: str
    ) -> None:
        book = await make_book(copies_total=1)
        if before != "nothing":
            await checkout("borrow:1", book["id"])
        if before == "checkin":
            await checkin("borrow:1")
        if before == "other transfer":
            await transfer("borrow:1", "hold:1")
        ledger = loans(db)
        response = await transfer("borrow:1", "hold:5")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "not_checked_out"
        assert loans(db) == ledger

    async def test_a_target_that_holds_a_copy_is_409(  # type: ignore[no-untyped-def]
        self, make_book, checkout, transfer, db
    ) -> None:
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        await checkout("hold:5", book["id"])
        ledger = loans(db)
        problem = assert_problem(await transfer("borrow:1", "hold:5"), 409)
        assert problem["detail"] == (
            "hold:5 already had a copy that did not come from borrow:1; a copy can only be "
            "handed to a reference that never held one. Nothing moved."
        )
        assert loans(db) == ledger
        assert copies_of(db, book["id"]) == (2, 0)

    async def test_a_target_that_returned_a_copy_is_409(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, transfer, db
    ) -> None:
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        await checkout("hold:5", book["id"])
        await checkin("hold:5")
        assert_problem(await transfer("borrow:1", "hold:5"), 409)
        assert loans(db)["borrow:1"] == (book["id"], "out", None)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"from_reference": "borrow:1", "to_reference": "borrow:1"}, "body"),
            ({"from_reference": "borrow:1", "to_reference": "order:1"}, "to_reference"),
            ({"from_reference": "borrow:1"}, "to_reference"),
        ],
    )
    async def test_rejects_bad_bodies(
        self, client: httpx.AsyncClient, body: dict[str, Any], field: str
    ) -> None:
        problem = assert_problem(await client.post(TRANSFERS, json=body, headers=KEY_HEADER), 422)
        assert [error["field"] for error in problem["errors"]] == [field]
