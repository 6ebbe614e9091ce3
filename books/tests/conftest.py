from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from books.app import create_app
from books.config import Settings
from books.db import close_databases
from servicekit.api_keys import Role, bearer, new_token, register_key

SERVICE_KEY = "test-service-key-3f9c1e"
KEY_HEADER = {"X-Service-Key": SERVICE_KEY}


@pytest.fixture(scope="session")
def key_of(books_database_url: str):  # type: ignore[no-untyped-def]
    """Factory: a new API key of `role`, registered in the tests' books database."""

    def make(role: Role) -> str:
        token = new_token()
        register_key([books_database_url], token=token, role=role, name=f"tests-{role}")
        return token

    return make


@pytest.fixture(scope="session")
def admin_key(key_of) -> str:  # type: ignore[no-untyped-def]
    return key_of(Role.ADMIN)  # type: ignore[no-any-return]


def client_for(app: FastAPI, token: str | None = None) -> httpx.AsyncClient:
    """A client of the app in-process; with a token, every request carries it."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport, base_url="http://books.test", headers=bearer(token) if token else None
    )


def internal_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings of an app whose internal APIs are called, races included."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "SERVICE_KEY": SERVICE_KEY,
        # Concurrent requests queue for a connection instead of failing the race tests.
        "db_pool_size": 20,
        "db_max_overflow": 0,
        "db_pool_timeout_s": 60.0,
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="session")
def books_settings(books_database_url: str) -> Settings:
    return Settings(database_url=books_database_url)


@pytest.fixture(scope="session")
async def books_app(books_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(books_settings)
    yield app
    await close_databases(app)


# The item types migration 0011 creates; tests' own are deleted after each test.
SEEDED_ITEM_TYPES = "'book', 'reference', 'audiobook', 'magazine'"


@pytest.fixture(autouse=True)
def _empty_catalog(books_database_url: str) -> None:
    """Each test starts with an empty catalog and stock ledger (TRUNCATE skips the count
    triggers; CASCADE empties the tables that reference these)."""
    with psycopg.connect(books_database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE books, catalog_days, stock_reservations, outbox RESTART IDENTITY CASCADE"
        )
        conn.execute("UPDATE catalog_counters SET active_books = 0")
        conn.execute(f"DELETE FROM item_types WHERE code NOT IN ({SEEDED_ITEM_TYPES})")


@pytest.fixture
async def client(books_app: FastAPI, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The books API as the catalog's admin calls it (with an admin key)."""
    async with client_for(books_app, admin_key) as client:
        yield client


@pytest.fixture
async def anonymous(books_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The books API as a visitor calls it: no key."""
    async with client_for(books_app) as client:
        yield client


@pytest.fixture
def db(books_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection for asserting what was (not) written."""
    with psycopg.connect(books_database_url, autocommit=True) as conn:
        yield conn


def book_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": "The Great Gatsby",
        "author": "F. Scott Fitzgerald",
        "description": "A classic American novel set in the Jazz Age.",
        "price": "19.99",
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def make_book(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: create a book through the API and return its JSON."""

    async def make(**overrides: Any) -> dict[str, Any]:
        response = await client.post("/v1/books", json=book_payload(**overrides))
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    return make


def discarded_images(db: psycopg.Connection[Any]) -> list[str]:
    """public_ids of the images handed to the workers for deletion, oldest first."""
    rows = db.execute(
        "SELECT payload->>'public_id' FROM outbox WHERE topic = 'cover.discarded' ORDER BY id"
    ).fetchall()
    return [row[0] for row in rows]


def count_books(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM books").fetchone()
    assert row is not None
    return int(row[0])


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= body.keys()
    assert body["request_id"] == response.headers["x-request-id"]
    # The predecessor's members, on every problem: a stable code and the sentence.
    assert re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", body["error"]), body
    assert body["message"] == body["detail"]
    return body


__all__ = ["Decimal", "assert_problem", "book_payload", "count_books"]
