"""Inventory tests run the books app with a service key and a pool sized for the race tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from books.app import create_app
from books.db import close_databases
from tests.conftest import KEY_HEADER, internal_settings

RESERVATIONS = "/internal/v1/stock/reservations"
RELEASES = "/internal/v1/stock/releases"


@pytest.fixture(scope="session")
async def books_app(books_database_url: str) -> AsyncIterator[FastAPI]:
    """Replaces the suite's app (and so what `client` and `make_book` use) in this folder."""
    app = create_app(internal_settings(books_database_url))
    yield app
    await close_databases(app)


def lines(*items: tuple[int, int]) -> list[dict[str, int]]:
    return [{"book_id": book_id, "quantity": quantity} for book_id, quantity in items]


@pytest.fixture
def reserve(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: POST a reservation of `(book_id, quantity)` lines with the service key."""

    async def reserve(reference: str, *items: tuple[int, int]) -> httpx.Response:
        body = {"reference": reference, "lines": lines(*items)}
        return await client.post(RESERVATIONS, json=body, headers=KEY_HEADER)

    return reserve


@pytest.fixture
def release(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: POST a release of a reference with the service key."""

    async def release(reference: str) -> httpx.Response:
        return await client.post(RELEASES, json={"reference": reference}, headers=KEY_HEADER)

    return release


def stock_of(db: psycopg.Connection[Any], book_id: int) -> int | None:
    row = db.execute("SELECT stock FROM books WHERE id = %s", (book_id,)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def movements(db: psycopg.Connection[Any]) -> list[tuple[str, int, str, int]]:
    """The ledger's movements of reservations (it also holds each book's opening stock and
    adjustments: see test_ledger)."""
    rows = db.execute(
        "SELECT reference, book_id, kind, quantity FROM stock_movements"
        " WHERE reference IS NOT NULL ORDER BY id"
    ).fetchall()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def unbalanced_books(db: psycopg.Connection[Any]) -> list[tuple[int, int | None, int]]:
    """(book, stock, sum of its movements) of every book whose ledger does not add up to
    its stock: an untracked book's sum is 0."""
    rows = db.execute(
        "SELECT b.id, b.stock, coalesce(sum(m.delta), 0) FROM books b"
        " LEFT JOIN stock_movements m ON m.book_id = b.id GROUP BY b.id"
        " HAVING coalesce(b.stock, 0) <> coalesce(sum(m.delta), 0)"
    ).fetchall()
    return [(row[0], row[1], int(row[2])) for row in rows]


def reservations(db: psycopg.Connection[Any]) -> dict[str, str]:
    rows = db.execute("SELECT reference, status FROM stock_reservations").fetchall()
    return {row[0]: row[1] for row in rows}
