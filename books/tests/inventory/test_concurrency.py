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


async def blocked_on_a_lock(db: psycopg.Connection[Any], count: int) -> None:
    """Until `count` sessions of the test database wait for a lock (a row or a reference
    another transaction holds); a guard fails the test instead of letting it hang."""
    async with asyncio.timeout(30):
        while True:
            row = db.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            assert row is not None
            if row[0] >= count:
                return
            await asyncio.sleep(0.01)


class TestReservationWaitingForAWriter:
    """A reservation that waits for another transaction's lock on a book decides on the
    book as that transaction left it (the reservation is one statement: see
    `books.inventory.repository._RESERVE`)."""

    async def test_takes_stock_that_came_in_while_it_waited(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db, books_database_url
    ) -> None:
        book = await make_book(stock=0)
        with psycopg.connect(books_database_url) as restock:
            restock.execute("UPDATE books SET stock = stock + 1 WHERE id = %s", [book["id"]])
            reservation = asyncio.ensure_future(reserve("order:1", (book["id"], 1)))
            await blocked_on_a_lock(db, 1)
            restock.commit()
            response = await reservation
        assert response.json()["status"] == "reserved"
        assert stock_of(db, book["id"]) == 0
        assert unbalanced_books(db) == []

    async def test_refuses_stock_that_went_while_it_waited(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db, books_database_url
    ) -> None:
        short = await make_book(stock=2)
        other = await make_book(stock=5)
        with psycopg.connect(books_database_url) as removal:
            removal.execute("UPDATE books SET stock = stock - 1 WHERE id = %s", [short["id"]])
            reservation = asyncio.ensure_future(
                reserve("order:1", (short["id"], 2), (other["id"], 1))
            )
            await blocked_on_a_lock(db, 1)
            removal.commit()
            response = await reservation
        assert response.json()["status"] == "rejected"
        assert response.json()["shortages"] == [
            {
                "book_id": short["id"],
                "requested": 2,
                "available": 1,
                "reason": "insufficient_stock",
            }
        ]
        assert (stock_of(db, short["id"]), stock_of(db, other["id"])) == (1, 5)
        assert movements(db) == []
        assert unbalanced_books(db) == []

    async def test_two_orders_for_the_last_copy_one_gets_every_line(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db, books_database_url
    ) -> None:
        last = await make_book(stock=1)
        plenty = await make_book(stock=10)
        with psycopg.connect(books_database_url) as holder:
            holder.execute("SELECT FROM books WHERE id = %s FOR UPDATE", [last["id"]])
            racing = [
                asyncio.ensure_future(reserve(f"order:{n}", (last["id"], 1), (plenty["id"], 2)))
                for n in (1, 2)
            ]
            await blocked_on_a_lock(db, 2)
            holder.rollback()
            responses = await asyncio.gather(*racing)
        assert sorted(response.json()["status"] for response in responses) == [
            "rejected",
            "reserved",
        ]
        assert (stock_of(db, last["id"]), stock_of(db, plenty["id"])) == (0, 8)
        winner = next(r.json()["reference"] for r in responses if r.json()["status"] == "reserved")
        assert movements(db) == [
            (winner, last["id"], "reserve", 1),
            (winner, plenty["id"], "reserve", 2),
        ]
        assert unbalanced_books(db) == []

    async def test_a_replay_racing_the_first_call_answers_the_same(  # type: ignore[no-untyped-def]
        self, make_book, reserve, db, books_database_url
    ) -> None:
        """The replay waits for the first call's claim of the reference, then reads the
        outcome it committed (which the replay's own statement could not see)."""
        book = await make_book(stock=3)
        with psycopg.connect(books_database_url) as holder:
            holder.execute("SELECT FROM books WHERE id = %s FOR UPDATE", [book["id"]])
            first = asyncio.ensure_future(reserve("order:1", (book["id"], 2)))
            await blocked_on_a_lock(db, 1)
            replay = asyncio.ensure_future(reserve("order:1", (book["id"], 2)))
            await blocked_on_a_lock(db, 2)
            holder.rollback()
            responses = [await first, await replay]
        assert [response.status_code for response in responses] == [200, 200]
        assert responses[0].json()["status"] == "reserved"
        assert responses[1].json() == responses[0].json()
        assert stock_of(db, book["id"]) == 1
        assert movements(db) == [("order:1", book["id"], "reserve", 2)]
