"""Lending tests run the books app with a service key and a pool sized for the race tests."""

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

CHECKOUTS = "/internal/v1/copies/checkouts"
CHECKINS = "/internal/v1/copies/checkins"
TRANSFERS = "/internal/v1/copies/transfers"


@pytest.fixture(scope="session")
async def books_app(books_database_url: str) -> AsyncIterator[FastAPI]:
    """Replaces the suite's app (and so what `client` and `make_book` use) in this folder."""
    app = create_app(internal_settings(books_database_url))
    yield app
    await close_databases(app)


@pytest.fixture
def checkout(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: POST a checkout with the service key; returns the answer's status."""

    async def checkout(reference: str, book_id: int) -> str:
        body = {"reference": reference, "book_id": book_id}
        response = await client.post(CHECKOUTS, json=body, headers=KEY_HEADER)
        assert response.status_code == 200, response.text
        assert response.json() == body | {"status": response.json()["status"]}
        return response.json()["status"]  # type: ignore[no-any-return]

    return checkout


@pytest.fixture
def checkin(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: POST a checkin with the service key; returns the answer's status."""

    async def checkin(reference: str) -> str:
        response = await client.post(CHECKINS, json={"reference": reference}, headers=KEY_HEADER)
        assert response.status_code == 200, response.text
        return response.json()["status"]  # type: ignore[no-any-return]

    return checkin


@pytest.fixture
def transfer(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: POST a transfer with the service key; returns the response."""

    async def transfer(from_reference: str, to_reference: str) -> httpx.Response:
        body = {"from_reference": from_reference, "to_reference": to_reference}
        return await client.post(TRANSFERS, json=body, headers=KEY_HEADER)

    return transfer


def copies_of(db: psycopg.Connection[Any], book_id: int) -> tuple[int | None, int | None]:
    """(copies_total, copies_available) of a book, deleted or not."""
    row = db.execute(
        "SELECT copies_total, copies_available FROM books WHERE id = %s", (book_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def loans(db: psycopg.Connection[Any]) -> dict[str, tuple[int, str, str | None]]:
    """The ledger: reference -> (book_id, state, passed_to)."""
    rows = db.execute("SELECT reference, book_id, state, passed_to FROM copy_loans").fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def assert_ledger_balances(db: psycopg.Connection[Any]) -> None:
    """For every lendable book, the copies off the shelf are the ledger's `out` rows."""
    rows = db.execute(
        """
        SELECT b.id, b.copies_total - b.copies_available,
               (SELECT count(*) FROM copy_loans l WHERE l.book_id = b.id AND l.state = 'out')
        FROM books b WHERE b.copies_total IS NOT NULL
        """
    ).fetchall()
    assert rows
    assert [(book_id, off_shelf) for book_id, off_shelf, _ in rows] == [
        (book_id, out) for book_id, _, out in rows
    ]
