"""`copies_total` / `copies_available` in the public catalog API."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.catalog.test_router import parse_links
from tests.conftest import assert_problem, book_payload, count_books
from tests.lending.conftest import copies_of

BAD_TOTALS = [-1, 2**31, "5", 1.5, True, False]


class TestCopiesOnCreate:
    async def test_are_null_when_not_sent(self, make_book, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book()
        assert (book["copies_total"], book["copies_available"]) == (None, None)
        assert copies_of(db, book["id"]) == (None, None)

    @pytest.mark.parametrize("total", [0, 3, 2**31 - 1])
    async def test_every_copy_starts_on_the_shelf(self, make_book, client, db, total: int) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=total)
        assert (book["copies_total"], book["copies_available"]) == (total, total)
        assert copies_of(db, book["id"]) == (total, total)
        shown = (await client.get(f"/v1/books/{book['id']}")).json()
        assert (shown["copies_total"], shown["copies_available"]) == (total, total)

    async def test_are_apart_from_the_stock(self, make_book) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=10, copies_total=2)
        assert (book["stock"], book["copies_total"], book["copies_available"]) == (10, 2, 2)

    @pytest.mark.parametrize("total", BAD_TOTALS)
    async def test_rejects_bad_totals_and_writes_nothing(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any], total: Any
    ) -> None:
        response = await client.post("/v1/books", json=book_payload(copies_total=total))
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["copies_total"]
        assert count_books(db) == 0

    async def test_available_copies_are_read_only(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        response = await client.post(
            "/v1/books", json=book_payload(copies_total=3, copies_available=3)
        )
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["copies_available"]
        assert count_books(db) == 0


class TestCopiesOnUpdate:
    @pytest.mark.parametrize("method", ["PATCH", "PUT"])
    async def test_null_to_a_total_puts_every_copy_on_the_shelf(  # type: ignore[no-untyped-def]
        self, make_book, client, db, method: str
    ) -> None:
        book = await make_book()
        response = await client.request(method, f"/v1/books/{book['id']}", json={"copies_total": 4})
        assert response.status_code == 200, response.text
        assert (response.json()["copies_total"], response.json()["copies_available"]) == (4, 4)
        assert copies_of(db, book["id"]) == (4, 4)

    @pytest.mark.parametrize(("total", "expected"), [(5, (5, 3)), (2, (2, 0)), (3, (3, 1))])
    async def test_the_shelf_moves_by_the_same_delta(  # type: ignore[no-untyped-def]
        self, make_book, checkout, client, db, total: int, expected: tuple[int, int]
    ) -> None:
        book = await make_book(copies_total=3)
        assert await checkout("borrow:1", book["id"]) == "checked_out"
        assert await checkout("borrow:2", book["id"]) == "checked_out"
        response = await client.patch(f"/v1/books/{book['id']}", json={"copies_total": total})
        assert response.status_code == 200, response.text
        assert (response.json()["copies_total"], response.json()["copies_available"]) == expected
        assert copies_of(db, book["id"]) == expected

    async def test_below_the_copies_out_is_409_and_changes_nothing(  # type: ignore[no-untyped-def]
        self, make_book, checkout, client, db
    ) -> None:
        book = await make_book(copies_total=3)
        for n in range(2):
            await checkout(f"borrow:{n}", book["id"])
        response = await client.patch(
            f"/v1/books/{book['id']}", json={"copies_total": 1, "price": "1.00"}
        )
        problem = assert_problem(response, 409)
        assert problem["type"] == "/problems/copies-on-loan"
        assert problem["detail"] == (
            f"Book {book['id']} has 2 copies out on loan, so copies_total cannot go down to 1: "
            "the smallest copies_total allowed is 2. Nothing was changed."
        )
        assert copies_of(db, book["id"]) == (3, 1)
        assert (await client.get(f"/v1/books/{book['id']}")).json()["price"] == "19.99"

    async def test_null_with_copies_out_is_409(self, make_book, checkout, client, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=3)
        await checkout("borrow:1", book["id"])
        response = await client.patch(f"/v1/books/{book['id']}", json={"copies_total": None})
        problem = assert_problem(response, 409)
        assert problem["detail"] == (
            f"Book {book['id']} has 1 copy out on loan, so it cannot stop being lendable: "
            "the smallest copies_total allowed is 1. Nothing was changed."
        )
        assert copies_of(db, book["id"]) == (3, 2)

    async def test_null_with_every_copy_in_stops_lending(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, client, db
    ) -> None:
        book = await make_book(copies_total=3)
        await checkout("borrow:1", book["id"])
        await checkin("borrow:1")
        response = await client.patch(f"/v1/books/{book['id']}", json={"copies_total": None})
        assert response.status_code == 200, response.text
        assert copies_of(db, book["id"]) == (None, None)

    async def test_other_changes_keep_the_copies(self, make_book, checkout, client) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=3)
        await checkout("borrow:1", book["id"])
        response = await client.patch(f"/v1/books/{book['id']}", json={"price": "5.00"})
        assert (response.json()["copies_total"], response.json()["copies_available"]) == (3, 2)

    async def test_available_copies_are_read_only(self, make_book, client, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=3)
        response = await client.patch(f"/v1/books/{book['id']}", json={"copies_available": 1})
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["copies_available"]
        assert copies_of(db, book["id"]) == (3, 3)

    @pytest.mark.parametrize("total", BAD_TOTALS)
    async def test_rejects_bad_totals_and_changes_nothing(  # type: ignore[no-untyped-def]
        self, make_book, client, db, total: Any
    ) -> None:
        book = await make_book(copies_total=3)
        response = await client.patch(f"/v1/books/{book['id']}", json={"copies_total": total})
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["copies_total"]
        assert copies_of(db, book["id"]) == (3, 3)

    async def test_deleted_book_is_404(self, make_book, client) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(copies_total=3)
        await client.delete(f"/v1/books/{book['id']}")
        response = await client.patch(f"/v1/books/{book['id']}", json={"copies_total": 1})
        assert_problem(response, 404)


class TestAvailableFilter:
    @pytest.fixture
    async def shelf(self, make_book, checkout) -> dict[str, int]:  # type: ignore[no-untyped-def]
        """Books named by their lending state, created oldest to newest."""
        books = {
            "not_lendable": await make_book(title="not lendable"),
            "on_shelf": await make_book(title="on shelf", copies_total=2),
            "all_out": await make_book(title="all out", copies_total=1),
            "none": await make_book(title="no copies", copies_total=0),
            "on_shelf_too": await make_book(title="on shelf too", copies_total=1, author="B"),
        }
        await checkout("borrow:1", books["all_out"]["id"])
        await checkout("borrow:2", books["on_shelf"]["id"])
        return {name: book["id"] for name, book in books.items()}

    async def titles(self, client: httpx.AsyncClient, query: str) -> list[str]:
        response = await client.get(f"/v1/books?{query}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["data"]) == int(response.headers["x-total-count"])
        return [book["title"] for book in body["data"]]

    async def test_true_lists_books_with_a_copy_on_the_shelf(self, client, shelf) -> None:  # type: ignore[no-untyped-def]
        assert await self.titles(client, "available=true") == ["on shelf too", "on shelf"]

    async def test_false_lists_lendable_books_with_every_copy_out(self, client, shelf) -> None:  # type: ignore[no-untyped-def]
        assert await self.titles(client, "available=false") == ["no copies", "all out"]

    async def test_combines_with_other_filters(self, client, shelf) -> None:  # type: ignore[no-untyped-def]
        assert await self.titles(client, "available=true&author=b") == ["on shelf too"]
        assert await self.titles(client, f"available=true&ids={shelf['on_shelf']}") == ["on shelf"]

    async def test_skips_deleted_books(self, client, shelf) -> None:  # type: ignore[no-untyped-def]
        await client.delete(f"/v1/books/{shelf['on_shelf_too']}")
        assert await self.titles(client, "available=true") == ["on shelf"]

    async def test_follows_checkouts_and_returns(self, client, shelf, checkin) -> None:  # type: ignore[no-untyped-def]
        await checkin("borrow:1")
        assert await self.titles(client, "available=false") == ["no copies"]

    async def test_links_keep_the_filter(self, client, shelf) -> None:  # type: ignore[no-untyped-def]
        response = await client.get("/v1/books?available=true&limit=1")
        assert parse_links(response.headers["link"])["next"] == (
            "/v1/books?limit=1&offset=1&available=true"
        )

    @pytest.mark.parametrize("value", ["maybe", "", "2"])
    async def test_rejects_other_values(self, client: httpx.AsyncClient, value: str) -> None:
        problem = assert_problem(await client.get(f"/v1/books?available={value}"), 422)
        assert [error["field"] for error in problem["errors"]] == ["available"]


class TestOpenApi:
    async def test_documents_the_copies(self, client: httpx.AsyncClient) -> None:
        spec = (await client.get("/openapi.json")).json()
        schemas = spec["components"]["schemas"]
        for name in ("copies_total", "copies_available"):
            field = schemas["BookRead"]["properties"][name]
            assert field["description"]
            assert field["examples"]
        create = spec["paths"]["/v1/books"]["post"]["requestBody"]["content"]
        for media_type in ("application/json", "multipart/form-data"):
            fields = create[media_type]["schema"]["properties"]
            assert "copies_total" in fields
            assert "copies_available" not in fields
        assert "copies_total" in schemas["BookUpdate"]["properties"]
        assert "copies_available" not in schemas["BookUpdate"]["properties"]
        parameters = spec["paths"]["/v1/books"]["get"]["parameters"]
        assert "available" in {parameter["name"] for parameter in parameters}
