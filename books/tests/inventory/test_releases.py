"""POST /internal/v1/stock/releases: gives back exactly what a reference reserved, once."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import assert_problem
from tests.inventory.conftest import KEY_HEADER, RELEASES, lines, movements, reservations, stock_of


class TestReleaseStock:
    async def test_gives_back_what_was_reserved(self, make_book, reserve, release, db) -> None:  # type: ignore[no-untyped-def]
        first = await make_book(stock=10)
        second = await make_book(stock=5)
        await reserve("order:1", (first["id"], 3), (second["id"], 5))
        response = await release("order:1")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "reference": "order:1",
            "status": "released",
            "lines": lines((first["id"], 3), (second["id"], 5)),
        }
        assert (stock_of(db, first["id"]), stock_of(db, second["id"])) == (10, 5)
        assert movements(db) == [
            ("order:1", first["id"], "reserve", 3),
            ("order:1", second["id"], "reserve", 5),
            ("order:1", first["id"], "release", 3),
            ("order:1", second["id"], "release", 5),
        ]
        assert reservations(db) == {"order:1": "released"}

    async def test_a_repeat_gives_back_nothing_more(self, make_book, reserve, release, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=10)
        await reserve("order:1", (book["id"], 3))
        first = await release("order:1")
        again = await release("order:1")
        assert again.status_code == 200
        assert again.json() == first.json()
        assert stock_of(db, book["id"]) == 10
        assert [kind for _, _, kind, _ in movements(db)] == ["reserve", "release"]

    async def test_leaves_other_references_alone(self, make_book, reserve, release, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=10)
        await reserve("order:1", (book["id"], 3))
        await reserve("order:2", (book["id"], 4))
        await release("order:1")
        assert stock_of(db, book["id"]) == 6
        assert reservations(db) == {"order:1": "released", "order:2": "reserved"}

    async def test_untracked_books_stay_untracked(self, make_book, reserve, release, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book()
        await reserve("order:1", (book["id"], 3))
        assert (await release("order:1")).json()["status"] == "released"
        assert stock_of(db, book["id"]) is None
        assert movements(db) == []

    async def test_does_not_restore_stock_that_was_untracked_when_reserved(  # type: ignore[no-untyped-def]
        self, make_book, reserve, release, client, db
    ) -> None:
        book = await make_book()
        await reserve("order:1", (book["id"], 3))
        await client.patch(f"/v1/books/{book['id']}", json={"stock": 7})
        await release("order:1")
        assert stock_of(db, book["id"]) == 7

    async def test_restores_stock_of_a_book_deleted_since(  # type: ignore[no-untyped-def]
        self, make_book, reserve, release, client, db
    ) -> None:
        book = await make_book(stock=5)
        await reserve("order:1", (book["id"], 2))
        await client.delete(f"/v1/books/{book['id']}")
        await release("order:1")
        assert stock_of(db, book["id"]) == 5

    async def test_unknown_reference_releases_nothing(self, release, db) -> None:  # type: ignore[no-untyped-def]
        for _ in range(2):
            response = await release("order:404")
            assert response.status_code == 200
            assert response.json() == {
                "reference": "order:404",
                "status": "not_reserved",
                "lines": [],
            }
        assert reservations(db) == {"order:404": "released"}
        assert movements(db) == []

    async def test_a_reservation_after_its_release_takes_nothing(  # type: ignore[no-untyped-def]
        self, make_book, reserve, release, db
    ) -> None:
        """An order cancelled before its stock job ran: the job, retried after the release,
        must not reserve stock that nothing would give back."""
        book = await make_book(stock=5)
        await release("order:1")
        response = await reserve("order:1", (book["id"], 2))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "released"
        assert stock_of(db, book["id"]) == 5
        assert movements(db) == []

    async def test_rejected_reference_releases_nothing(
        self, make_book, reserve, release, db
    ) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=1)
        await reserve("order:1", (book["id"], 2))
        response = await release("order:1")
        assert response.json() == {"reference": "order:1", "status": "not_reserved", "lines": []}
        assert stock_of(db, book["id"]) == 1
        assert reservations(db) == {"order:1": "rejected"}


class TestReleaseValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "reference"),
            ({"reference": "order 1"}, "reference"),
            ({"reference": None}, "reference"),
            ({"reference": "order:1", "lines": []}, "lines"),
        ],
    )
    async def test_rejects_bad_bodies_and_writes_nothing(  # type: ignore[no-untyped-def]
        self,
        client: httpx.AsyncClient,
        make_book,
        reserve,
        db: psycopg.Connection[Any],
        body: dict[str, Any],
        field: str,
    ) -> None:
        book = await make_book(stock=5)
        await reserve("order:1", (book["id"], 2))
        problem = assert_problem(await client.post(RELEASES, json=body, headers=KEY_HEADER), 422)
        assert [error["field"] for error in problem["errors"]] == [field]
        assert stock_of(db, book["id"]) == 3
        assert reservations(db) == {"order:1": "reserved"}
