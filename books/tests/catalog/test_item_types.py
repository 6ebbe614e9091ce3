"""Item types (`format` of a book): the admin-managed list, and books carrying one."""

from __future__ import annotations

import asyncio

import httpx
import psycopg

from tests.conftest import assert_problem, book_payload


class TestListItemTypes:
    async def test_lists_the_seeded_types_to_anyone(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.get("/v1/item-types")
        assert response.status_code == 200
        codes = [t["code"] for t in response.json()]
        assert codes == ["audiobook", "book", "magazine", "reference"]


class TestCreateItemType:
    async def test_admin_adds_one(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/item-types", json={"code": "dvd", "name": " DVD "})
        assert response.status_code == 201, response.text
        assert response.headers["location"] == "/v1/item-types/dvd"
        assert response.json()["name"] == "DVD"

    async def test_refuses_a_taken_code(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/item-types", json={"code": "book", "name": "Again"})
        assert assert_problem(response, 409)["error"] == "ITEM_TYPE_EXISTS"

    async def test_refuses_a_bad_code(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/item-types", json={"code": "DVD!", "name": "DVD"})
        assert assert_problem(response, 422)["errors"][0]["field"] == "code"

    async def test_needs_an_admin_key(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.post("/v1/item-types", json={"code": "dvd", "name": "DVD"})
        assert_problem(response, 401)


class TestDeleteItemType:
    async def test_deletes_an_unused_one(self, client: httpx.AsyncClient) -> None:
        await client.post("/v1/item-types", json={"code": "dvd", "name": "DVD"})
        assert (await client.delete("/v1/item-types/dvd")).status_code == 204
        assert_problem(await client.delete("/v1/item-types/dvd"), 404)

    async def test_refuses_the_default(self, client: httpx.AsyncClient) -> None:
        response = await client.delete("/v1/item-types/book")
        assert assert_problem(response, 409)["error"] == "DEFAULT_ITEM_TYPE"

    async def test_refuses_one_a_book_has(self, client: httpx.AsyncClient) -> None:
        await client.post("/v1/books", json=book_payload(format="magazine"))
        response = await client.delete("/v1/item-types/magazine")
        assert assert_problem(response, 409)["error"] == "ITEM_TYPE_IN_USE"

    async def test_a_book_given_the_type_meanwhile_keeps_it(
        self, client: httpx.AsyncClient, db: psycopg.Connection
    ) -> None:
        """Delete and a new book of the type race: never a book with a deleted type."""
        await client.post("/v1/item-types", json={"code": "dvd", "name": "DVD"})
        deleted, created = await asyncio.gather(
            client.delete("/v1/item-types/dvd"),
            client.post("/v1/books", json=book_payload(format="dvd")),
        )
        assert {deleted.status_code, created.status_code} in ({204, 422}, {409, 201})
        orphans = db.execute(
            "SELECT count(*) FROM books b WHERE NOT EXISTS"
            " (SELECT 1 FROM item_types t WHERE t.code = b.format)"
        ).fetchone()
        assert orphans == (0,)


class TestBookFormat:
    async def test_defaults_to_book(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/books", json=book_payload())
        assert response.json()["format"] == "book"

    async def test_unknown_format_is_a_422_and_nothing_is_written(
        self, client: httpx.AsyncClient, db: psycopg.Connection
    ) -> None:
        response = await client.post("/v1/books", json=book_payload(format="scroll"))
        body = assert_problem(response, 422)
        assert body["error"] == "UNKNOWN_ITEM_TYPE"
        assert body["errors"][0]["field"] == "format"
        assert db.execute("SELECT count(*) FROM books").fetchone() == (0,)

    async def test_changes_with_patch(self, client: httpx.AsyncClient) -> None:
        book = (await client.post("/v1/books", json=book_payload())).json()
        response = await client.patch(f"/v1/books/{book['id']}", json={"format": "reference"})
        assert response.status_code == 200
        assert response.json()["format"] == "reference"
        response = await client.patch(f"/v1/books/{book['id']}", json={"format": "scroll"})
        assert assert_problem(response, 422)["error"] == "UNKNOWN_ITEM_TYPE"
        response = await client.patch(f"/v1/books/{book['id']}", json={"format": None})
        assert_problem(response, 422)

    async def test_filters_the_list(self, client: httpx.AsyncClient) -> None:
        await client.post("/v1/books", json=book_payload(title="Dune"))
        await client.post("/v1/books", json=book_payload(title="Vogue", format="magazine"))
        response = await client.get("/v1/books", params={"format": "magazine"})
        assert [b["title"] for b in response.json()["data"]] == ["Vogue"]
        assert response.json()["total"] == 1
