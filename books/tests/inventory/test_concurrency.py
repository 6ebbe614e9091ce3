"""Many reservations and releases at once, through the app and its connection pool."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import psycopg

from tests.inventory.conftest import movements, reservations, stock_of, unbalanced_books


class TestConcurrentReservations:
    async def test_never_sells_more_than_the_stock(self, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=100)
        responses = await asyncio.gather(
            *(reserve(f"order:{n}", (book["id"], 1)) for n in range(200))
        )
        assert {response.status_code for response in responses} == {200}
        outcomes = Counter(response.json()["status"] for response in responses)
        assert outcomes == {"reserved": 100, "rejected": 100}
        assert stock_of(db, book["id"]) == 0
        assert unbalanced_books(db) == []
        assert len(movements(db)) == 100
        assert Counter(reservations(db).values()) == outcomes
        rejected = [r.json() for r in responses if r.json()["status"] == "rejected"]
        assert {(s["available"], s["reason"]) for r in rejected for s in r["shortages"]} == {
            (0, "insufficient_stock")
        }

    async def test_duplicates_in_flight_take_stock_once(self, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=100)
        responses = await asyncio.gather(*(reserve("order:1", (book["id"], 3)) for _ in range(20)))
        assert {response.status_code for response in responses} == {200}
        assert {response.json()["status"] for response in responses} == {"reserved"}
        assert stock_of(db, book["id"]) == 97
        assert unbalanced_books(db) == []
        assert movements(db) == [("order:1", book["id"], "reserve", 3)]

    async def test_lines_in_opposite_orders_do_not_deadlock(self, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
        first = await make_book(stock=30)
        second = await make_book(stock=30)
        responses = await asyncio.gather(
            *(
                reserve(f"order:{n}", *[(first["id"], 1), (second["id"], 1)][:: 1 if n % 2 else -1])
                for n in range(60)
            )
        )
        assert {response.status_code for response in responses} == {200}
        outcomes = Counter(response.json()["status"] for response in responses)
        assert outcomes == {"reserved": 30, "rejected": 30}
        assert (stock_of(db, first["id"]), stock_of(db, second["id"])) == (0, 0)


class TestConcurrentReleases:
    async def test_duplicates_in_flight_give_back_once(  # type: ignore[no-untyped-def]
        self, make_book, reserve, release, db: psycopg.Connection[Any]
    ) -> None:
        book = await make_book(stock=10)
        await reserve("order:1", (book["id"], 4))
        responses = await asyncio.gather(*(release("order:1") for _ in range(20)))
        assert {response.json()["status"] for response in responses} == {"released"}
        assert stock_of(db, book["id"]) == 10
        assert unbalanced_books(db) == []
        assert [kind for _, _, kind, _ in movements(db)] == ["reserve", "release"]

    async def test_releases_and_reservations_interleave_exactly(  # type: ignore[no-untyped-def]
        self, make_book, reserve, release, db
    ) -> None:
        """Half the holders give back while newcomers compete for what is left."""
        book = await make_book(stock=20)
        for n in range(20):
            await reserve(f"order:{n}", (book["id"], 1))
        newcomers = await asyncio.gather(
            *(release(f"order:{n}") for n in range(10)),
            *(reserve(f"order:{n}", (book["id"], 1)) for n in range(20, 60)),
        )
        reserved = sum(1 for r in newcomers[10:] if r.json()["status"] == "reserved")
        assert stock_of(db, book["id"]) == 10 - reserved
        assert unbalanced_books(db) == []
        assert 0 <= reserved <= 10


class TestUntrackedBooks:
    async def test_a_locked_untracked_book_does_not_hold_up_orders(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db, books_database_url
    ) -> None:
        """An untracked book is checked, not written: a reservation neither rewrites nor
        row-locks it, so orders of a popular untracked book never queue on its row."""
        untracked = await make_book()
        before = db.execute("SELECT xmin::text FROM books WHERE id = %s", [untracked["id"]])
        xmin = before.fetchone()
        with psycopg.connect(books_database_url) as holder:
            holder.execute("SELECT 1 FROM books WHERE id = %s FOR UPDATE", [untracked["id"]])
            response = await asyncio.wait_for(reserve("order:1", (untracked["id"], 2)), 10)
            holder.rollback()
        assert response.json()["status"] == "reserved"
        after = db.execute("SELECT xmin::text FROM books WHERE id = %s", [untracked["id"]])
        assert after.fetchone() == xmin

    async def test_a_deleted_untracked_book_is_still_refused(
        self, make_book, reserve, client
    ) -> None:  # type: ignore[no-untyped-def]
        untracked = await make_book()
        await client.delete(f"/v1/books/{untracked['id']}")
        response = await reserve("order:1", (untracked["id"], 1))
        assert response.json()["status"] == "rejected"
        assert response.json()["shortages"][0]["reason"] == "book_inactive"
