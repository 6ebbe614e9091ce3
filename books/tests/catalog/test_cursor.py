"""Keyset pagination of `GET /v1/books` (`after`): walks, links, filters and bad cursors."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from servicekit.pagination import encode_cursor
from tests.catalog.test_router import parse_links
from tests.conftest import assert_problem


def add_books(db: psycopg.Connection[Any], count: int, *, author: str = "Walker") -> None:
    """`count` books in one statement: they share one created_at, so only ids order them."""
    db.execute(
        "INSERT INTO books (title, author, description, price)"
        " SELECT 'Book ' || n, %s, 'D', 10 FROM generate_series(1, %s) n",
        (author, count),
    )


async def walk(client: httpx.AsyncClient, url: str) -> list[int]:
    """Every book id reached by following `next` links from `url`."""
    seen: list[int] = []
    next_url: str | None = url
    while next_url:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        seen += [book["id"] for book in response.json()["data"]]
        next_url = parse_links(response.headers["link"]).get("next")
    return seen


class TestCursorPages:
    async def test_first_page_links_to_the_next_by_cursor(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        add_books(db, 5)
        response = await client.get("/v1/books?limit=2&after=")
        body = response.json()
        assert [book["id"] for book in body["data"]] == [5, 4]
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, 0)
        assert response.headers["x-total-count"] == "5"
        links = parse_links(response.headers["link"])
        assert links["first"] == "/v1/books?limit=2&after="
        fourth = body["data"][1]
        cursor = encode_cursor(datetime.fromisoformat(fourth["created_at"]), fourth["id"])
        assert links["next"] == f"/v1/books?limit=2&after={cursor}"

    async def test_last_page_has_no_next_link(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        add_books(db, 4)
        first = await client.get("/v1/books?limit=2&after=")
        last = await client.get(parse_links(first.headers["link"])["next"])
        assert [book["id"] for book in last.json()["data"]] == [2, 1]
        assert set(parse_links(last.headers["link"])) == {"first"}

    @pytest.mark.parametrize("limit", [1, 3, 7, 100])
    async def test_walk_visits_every_book_once_in_order(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any], limit: int
    ) -> None:
        add_books(db, 10)
        add_books(db, 11)  # a second timestamp
        assert await walk(client, f"/v1/books?limit={limit}&after=") == list(range(21, 0, -1))

    async def test_walk_under_concurrent_inserts_neither_repeats_nor_skips(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any], books_database_url: str
    ) -> None:
        """Books added during the walk are newer than its cursor: they shift an offset walk,
        not this one, which returns exactly the books there were when it started."""
        add_books(db, 60)
        before = [row[0] for row in db.execute("SELECT id FROM books ORDER BY id DESC")]
        walking = True

        async def insert_meanwhile() -> int:
            added = 0
            async with await psycopg.AsyncConnection.connect(
                books_database_url, autocommit=True
            ) as conn:
                while walking:
                    await conn.execute(
                        "INSERT INTO books (title, author, description, price)"
                        " VALUES ('New', 'Walker', 'D', 1)"
                    )
                    added += 1
                    await asyncio.sleep(0)
            return added

        inserter = asyncio.create_task(insert_meanwhile())
        try:
            seen = await walk(client, "/v1/books?limit=7&after=")
        finally:
            walking = False
            added = await inserter
        assert added > 0
        assert seen == before

    async def test_filters_are_kept_across_pages(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        add_books(db, 5, author="Kept")
        add_books(db, 5, author="Other")
        first = await client.get("/v1/books?limit=2&after=&author=kept")
        assert "author=kept" in parse_links(first.headers["link"])["next"]
        assert first.json()["total"] == 5
        assert await walk(client, "/v1/books?limit=2&author=kept&after=") == [5, 4, 3, 2, 1]

    async def test_a_deleted_cursor_book_does_not_break_the_walk(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        add_books(db, 4)
        first = await client.get("/v1/books?limit=2&after=")
        db.execute("UPDATE books SET active = false WHERE id = 3")
        second = await client.get(parse_links(first.headers["link"])["next"])
        assert [book["id"] for book in second.json()["data"]] == [2, 1]

    async def test_offset_pages_keep_their_links(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        add_books(db, 3)
        response = await client.get("/v1/books?limit=1&offset=1")
        assert parse_links(response.headers["link"]) == {
            "first": "/v1/books?limit=1&offset=0",
            "prev": "/v1/books?limit=1&offset=0",
            "next": "/v1/books?limit=1&offset=2",
            "last": "/v1/books?limit=1&offset=2",
        }


class TestBadCursors:
    @pytest.mark.parametrize(
        "cursor",
        ["abc", "not base64!", "A" * 36, "x" * 65],
        ids=["short", "not-base64", "wrong-checksum", "too-long"],
    )
    async def test_malformed_cursor_is_422_naming_after(
        self, client: httpx.AsyncClient, cursor: str
    ) -> None:
        problem = assert_problem(await client.get("/v1/books", params={"after": cursor}), 422)
        assert [error["field"] for error in problem["errors"]] == ["after"]

    async def test_tampered_cursor_is_422(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        add_books(db, 3)
        first = await client.get("/v1/books?limit=1&after=")
        cursor = parse_links(first.headers["link"])["next"].split("after=")[1]
        tampered = cursor[:5] + ("B" if cursor[5] != "B" else "C") + cursor[6:]
        problem = assert_problem(await client.get("/v1/books", params={"after": tampered}), 422)
        assert "not a cursor this API gave" in problem["errors"][0]["message"]

    async def test_offset_and_cursor_together_is_422(self, client: httpx.AsyncClient) -> None:
        problem = assert_problem(await client.get("/v1/books?after=&offset=0"), 422)
        assert "either offset or after" in problem["errors"][0]["message"]

    async def test_cursor_is_documented(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()
        parameters = document["paths"]["/v1/books"]["get"]["parameters"]
        after = next(parameter for parameter in parameters if parameter["name"] == "after")
        assert "next" in after["description"]
