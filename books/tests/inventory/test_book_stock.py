"""The `stock` field of the public catalog API."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import assert_problem, book_payload, count_books
from tests.inventory.conftest import stock_of


class TestStockOnCreate:
    async def test_is_null_when_not_sent(self, make_book, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book()
        assert book["stock"] is None
        assert stock_of(db, book["id"]) is None

    @pytest.mark.parametrize("stock", [0, 7, 2**31 - 1])
    async def test_is_stored_and_shown(self, make_book, client, stock: int) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=stock)
        assert book["stock"] == stock
        assert (await client.get(f"/v1/books/{book['id']}")).json()["stock"] == stock
        assert (await client.get("/v1/books")).json()["data"][0]["stock"] == stock

    @pytest.mark.parametrize("stock", [-1, 2**31, "5", 1.5, True])
    async def test_rejects_bad_stock_and_writes_nothing(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any], stock: Any
    ) -> None:
        response = await client.post("/v1/books", json=book_payload(stock=stock))
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["stock"]
        assert count_books(db) == 0


class TestStockOnUpdate:
    @pytest.mark.parametrize("method", ["PATCH", "PUT"])
    async def test_sets_a_stock_level(self, make_book, client, db, method: str) -> None:  # type: ignore[no-untyped-def]
        book = await make_book()
        response = await client.request(method, f"/v1/books/{book['id']}", json={"stock": 12})
        assert response.status_code == 200
        assert response.json()["stock"] == 12
        assert stock_of(db, book["id"]) == 12

    async def test_null_stops_tracking(self, make_book, client, db) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=3)
        response = await client.patch(f"/v1/books/{book['id']}", json={"stock": None})
        assert response.json()["stock"] is None
        assert stock_of(db, book["id"]) is None

    async def test_other_changes_keep_the_stock(self, make_book, client) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=3)
        response = await client.patch(f"/v1/books/{book['id']}", json={"price": "5.00"})
        assert response.json()["stock"] == 3

    @pytest.mark.parametrize("stock", [-1, "3", False])
    async def test_rejects_bad_stock_and_changes_nothing(
        self, make_book, client, db, stock
    ) -> None:  # type: ignore[no-untyped-def]
        book = await make_book(stock=3)
        response = await client.patch(f"/v1/books/{book['id']}", json={"stock": stock})
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["stock"]
        assert stock_of(db, book["id"]) == 3
