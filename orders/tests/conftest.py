from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar

from devstack.servers import free_port
from devstack.services import ServiceProcess
from orders.app import create_app
from orders.config import Settings
from servicekit.api_keys import Role, bearer, new_token, register_key, token_prefix

TABLES = (
    "orders",
    "order_items",
    "outbox",
    "idempotency_keys",
    "members",
    "borrows",
    "holds",
    "notices",
    "lending_policy_changes",
    "ledger_entries",
    "closed_days",
    "closings",
    "block_overrides",
)
SERVICE_KEY = "test-service-key"
# The categories migration 0011 creates, as it creates them; tests' own are deleted.
SEEDED_CATEGORIES = "'adult', 'child', 'staff'"
SEEDED_CATEGORY_VALUES = """
    UPDATE member_categories c SET max_loans = v.max_loans, max_balance = v.max_balance,
        max_overdue_loans = v.max_overdue_loans, block_after_final_notice = false
    FROM (VALUES ('adult', 5, 10.00, 2), ('child', 3, 5.00, 1), ('staff', 20, 50.00, 5))
        AS v (code, max_loans, max_balance, max_overdue_loans)
    WHERE c.code = v.code
"""
# The default policy as migration 0012 makes it from the default settings.
DEFAULT_POLICY_VALUES = """
    UPDATE lending_policies SET lendable = true, loan_period_days = 14, max_renewals = 2,
        renew_grace_days = 0, max_loans = NULL, fine_per_day = 0.25, fine_cap = 10.00,
        grace_days = 0, holds_allowed = true, hold_pickup_days = 3, max_holds = NULL,
        lost_after_days = NULL, lost_processing_fee = 0, overdue_notice_days = '{1,7,14}'
    WHERE member_category IS NULL AND item_type IS NULL
"""
SERVICE_HEADERS = {"X-Service-Key": SERVICE_KEY}


@pytest.fixture(scope="session")
def key_of(orders_database_url: str, books_database_url: str):  # type: ignore[no-untyped-def]
    """Factory: a new API key of `role`, accepted by orders and by books (as the CLI
    registers a key in both databases)."""

    def make(role: Role) -> str:
        token = new_token()
        register_key(
            [orders_database_url, books_database_url], token=token, role=role, name=f"t-{role}"
        )
        return token

    return make


def key_id(db: psycopg.Connection[Any], token: str) -> int:
    """The id of a key's row in this database."""
    row = db.execute("SELECT id FROM api_keys WHERE prefix = %s", [token_prefix(token)]).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="session")
def admin_key(key_of) -> str:  # type: ignore[no-untyped-def]
    return key_of(Role.ADMIN)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def shop_key(key_of) -> str:  # type: ignore[no-untyped-def]
    """A shop frontend's key (role client)."""
    return key_of(Role.CLIENT)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def books_service(books_database_url: str) -> Iterator[ServiceProcess]:
    """The real books service, a uvicorn process on its own port."""
    with ServiceProcess(
        "books.app:create_app", free_port(), {"BOOKS_DATABASE_URL": books_database_url}
    ) as service:
        yield service


def orders_settings(database_url: str, books_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "books_url": books_url,
        "service_key": SERVICE_KEY,
        "rate_limit_redis_url": os.environ.get("ORDERS_RATE_LIMIT_REDIS_URL"),
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="session")
async def orders_app(
    orders_database_url: str, books_service: ServiceProcess
) -> AsyncIterator[Litestar]:
    app = create_app(orders_settings(orders_database_url, books_service.url))
    async with serving(app):
        yield app


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[Litestar]:
    """The app between its startup and its shutdown, as a server runs it: what it opens
    (pools, clients, the purger) is closed at the end, so no pool outlives its test.

    The lifespan runs in a task of its own because Litestar's holds an anyio task group,
    which must end in the task it began in, and pytest-asyncio ends a fixture in another.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # the startup failed: its error, and no waiter left behind
        waiting.cancel()
        task.result()
    try:
        yield app
    finally:
        stop.set()
        await task


@pytest.fixture(autouse=True)
def _empty_orders(orders_database_url: str) -> None:
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        # TRUNCATE fires no trigger: the counters the triggers keep start again by hand.
        conn.execute("UPDATE order_counts SET orders = 0")
        conn.execute(
            "DELETE FROM lending_policies WHERE NOT (member_category IS NULL AND item_type IS NULL)"
        )
        conn.execute(DEFAULT_POLICY_VALUES)
        conn.execute(f"DELETE FROM member_categories WHERE code NOT IN ({SEEDED_CATEGORIES})")
        conn.execute(SEEDED_CATEGORY_VALUES)


def asgi_client(app: Litestar, token: str | None = None) -> httpx.AsyncClient:
    """A client of the app in-process; with a token, every request carries it."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport,
        base_url="http://orders.test",
        headers=bearer(token) if token else None,
    )


@pytest.fixture
async def client(orders_app: Litestar, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The orders API with an admin key (which may do what the shop and the desk do)."""
    async with asgi_client(orders_app, admin_key) as client:
        yield client


@pytest.fixture
async def shop(orders_app: Litestar, shop_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The orders API as a shop frontend calls it (a client key)."""
    async with asgi_client(orders_app, shop_key) as client:
        yield client


@pytest.fixture
async def anonymous(orders_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(orders_app) as client:
        yield client


@pytest.fixture
async def books(books_service: ServiceProcess, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client of the running books service, with the admin key."""
    async with httpx.AsyncClient(base_url=books_service.url, headers=bearer(admin_key)) as client:
        yield client


@pytest.fixture
def db(orders_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection for asserting what was (not) written."""
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
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
def make_book(books: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: create a book through the books API and return its JSON."""

    async def make(**overrides: Any) -> dict[str, Any]:
        response = await books.post("/v1/books", json=book_payload(**overrides))
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    return make


def row_counts(db: psycopg.Connection[Any]) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        row = db.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        counts[table] = int(row[0])
    return counts


def assert_nothing_written(db: psycopg.Connection[Any]) -> None:
    assert row_counts(db) == dict.fromkeys(TABLES, 0)


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


def order_body(*lines: tuple[int, int], **extra: Any) -> dict[str, Any]:
    return {"items": [{"book_id": b, "quantity": q} for b, q in lines], **extra}


def outbox_events(db: psycopg.Connection[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(row[0], row[1]) for row in db.execute("SELECT topic, payload FROM outbox ORDER BY id")]


@pytest.fixture
def place_order(client: httpx.AsyncClient, make_book):  # type: ignore[no-untyped-def]
    """Factory: a pending order of `quantity` copies of a new book; returns the order JSON."""

    async def place(quantity: int = 2, **book: Any) -> dict[str, Any]:
        created = await make_book(**book)
        response = await client.post("/v1/orders", json=order_body((created["id"], quantity)))
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    return place
