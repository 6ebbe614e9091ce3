"""Many copy movements at once, through the app and its connection pool."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from tests.lending.conftest import assert_ledger_balances, copies_of, loans


class TestConcurrentCheckouts:
    async def test_never_lends_more_than_the_copies(self, make_book, checkout, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=3)
        statuses = await asyncio.gather(*(checkout(f"borrow:{n}", book["id"]) for n in range(10)))
        assert Counter(statuses) == {"checked_out": 3, "unavailable": 7}
        assert copies_of(db, book["id"]) == (3, 0)
        assert len(loans(db)) == 3
        assert_ledger_balances(db)

    async def test_duplicates_in_flight_take_one_copy(self, make_book, checkout, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=3)
        statuses = await asyncio.gather(*(checkout("borrow:1", book["id"]) for _ in range(10)))
        assert set(statuses) == {"checked_out"}
        assert copies_of(db, book["id"]) == (3, 2)
        assert loans(db) == {"borrow:1": (book["id"], "out", None)}

    async def test_resizing_races_checkouts_without_breaking_the_ledger(  # type: ignore[no-untyped-def]
        self, make_book, checkout, client, db
    ) -> None:
        book = await make_book(copies_total=10)
        responses = await asyncio.gather(
            *(checkout(f"borrow:{n}", book["id"]) for n in range(20)),
            *(
                client.patch(f"/v1/books/{book['id']}", json={"copies_total": total})
                for total in (4, 12, 6, 8)
            ),
        )
        assert {r.status_code for r in responses[20:]} <= {200, 409}
        total, available = copies_of(db, book["id"])
        assert total is not None
        assert available is not None
        assert responses[:20].count("checked_out") == total - available
        assert_ledger_balances(db)


class TestConcurrentCheckins:
    async def test_duplicates_in_flight_give_back_once(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, db
    ) -> None:
        book = await make_book(copies_total=3)
        await checkout("borrow:1", book["id"])
        await checkout("borrow:2", book["id"])
        statuses = await asyncio.gather(*(checkin("borrow:1") for _ in range(10)))
        assert set(statuses) == {"checked_in"}
        assert copies_of(db, book["id"]) == (3, 2)


class TestConcurrentTransfers:
    async def test_duplicates_in_flight_hand_on_once(  # type: ignore[no-untyped-def]
        self, make_book, checkout, transfer, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        responses = await asyncio.gather(*(transfer("borrow:1", "hold:1") for _ in range(10)))
        assert {r.json()["status"] for r in responses} == {"transferred"}
        assert loans(db) == {
            "borrow:1": (book["id"], "passed", "hold:1"),
            "hold:1": (book["id"], "out", None),
        }

    async def test_one_copy_goes_to_one_of_many_targets(  # type: ignore[no-untyped-def]
        self, make_book, checkout, transfer, db
    ) -> None:
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        responses = await asyncio.gather(*(transfer("borrow:1", f"hold:{n}") for n in range(10)))
        assert [r.json()["status"] for r in responses].count("transferred") == 1
        assert {r.json()["status"] for r in responses} == {"transferred", "not_checked_out"}
        assert copies_of(db, book["id"]) == (1, 0)
        assert_ledger_balances(db)

    async def test_crossed_transfers_do_not_deadlock(  # type: ignore[no-untyped-def]
        self, make_book, checkout, transfer, db
    ) -> None:
        """Pairs handed both ways at once lock their rows in one order."""
        book = await make_book(copies_total=20)
        for n in range(10):
            await checkout(f"borrow:{n}", book["id"])
            await checkout(f"hold:{n}", book["id"])
        responses = await asyncio.gather(
            *(transfer(f"borrow:{n}", f"hold:{n}") for n in range(10)),
            *(transfer(f"hold:{n}", f"borrow:{n}") for n in range(10)),
        )
        assert {r.status_code for r in responses} == {409}
        assert copies_of(db, book["id"]) == (20, 0)


class TestLedger:
    async def test_balances_after_a_mixed_sequence(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, transfer, client, db
    ) -> None:
        """Random checkouts, checkins, transfers and resizes, in bursts, over three books."""
        rng = random.Random(20261123)
        books = [(await make_book(copies_total=total))["id"] for total in (2, 3, 5)]
        # A reference is always about one book, as orders' borrows and holds are.
        references = {
            book_id: [f"{kind}:{index * 100 + n}" for kind in ("borrow", "hold") for n in range(8)]
            for index, book_id in enumerate(books)
        }

        async def step() -> object:
            book_id = rng.choice(books)
            match rng.choice(["checkout", "checkout", "checkin", "transfer", "resize"]):
                case "checkout":
                    return await checkout(rng.choice(references[book_id]), book_id)
                case "checkin":
                    return await checkin(rng.choice(references[book_id]))
                case "transfer":
                    response = await transfer(*rng.sample(references[book_id], 2))
                    assert response.status_code in (200, 409), response.text
                    return response
                case _:
                    response = await client.patch(
                        f"/v1/books/{book_id}", json={"copies_total": rng.randint(0, 6)}
                    )
                    assert response.status_code in (200, 409), response.text
                    return response

        for _ in range(15):
            await asyncio.gather(*(step() for _ in range(8)))
            assert_ledger_balances(db)
        for book_id in books:
            total, available = copies_of(db, book_id)
            assert total is not None
            assert available is not None
            assert 0 <= available <= total
