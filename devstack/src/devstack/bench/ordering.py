"""The orders section: placing an order of 3 books and reading one back, next to a raw
psycopg read of an order with its items, and what the saga's sections share.

Placing orders sets the stack's saga going; the section waits for it to settle before
reading, so the reads do not share the cores with it. Orders are placed for books whose
stock is not tracked, so the saga never rejects one.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from books.seed import describe
from devstack.bench.load import expect, scenario, user_clients
from devstack.bench.raw import Baseline, Query, api_and_raw, api_pool_size
from devstack.bench.report import Report, first_line, ratio_note
from devstack.bench.stack import (
    ID_SAMPLE_SIZE,
    Options,
    SkipSection,
    fetch_all,
    fetch_value,
    key_headers,
    require_orders_database,
    require_service,
)
from orders.config import Settings as OrdersSettings

# The two statements the orders repository runs for `GET /v1/orders/{id}` (selectinload).
ORDER_BY_ID_SQL = (
    "SELECT id, status, rejection_reason, customer_id, total_price, created_at, updated_at"
    " FROM orders WHERE id = %s"
)
ORDER_ITEMS_SQL = (
    "SELECT order_id, id, book_id, book_title, book_author, quantity, unit_price,"
    " total_price, created_at FROM order_items WHERE order_id = ANY(%s) ORDER BY id"
)
# Books whose stock is not tracked: a reservation of them always succeeds.
UNTRACKED_BOOKS_SQL = (
    "SELECT id, title, author, price FROM books WHERE active AND stock IS NULL"
    " ORDER BY random() LIMIT %s"
)
ORDER_ITEMS = 3
# Waiting for the saga: give up when the pending count stops falling for this long.
SETTLE_PATIENCE_S = 10.0
SETTLE_LIMIT_S = 180.0


@dataclass(frozen=True)
class Book:
    id: int
    title: str
    author: str
    price: Decimal


async def untracked_books(url: str) -> list[Book]:
    """Books to order: their stock is not tracked, so a reservation is never short."""
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
            cursor = await conn.execute(UNTRACKED_BOOKS_SQL, (ID_SAMPLE_SIZE,))
            books = [Book(*row) for row in await cursor.fetchall()]
    except psycopg.Error as error:
        where = describe(url)
        raise SkipSection(
            f"cannot query the books database at {where}: {first_line(error)}"
        ) from error
    if len(books) < ORDER_ITEMS:
        raise SkipSection(
            f"orders need {ORDER_ITEMS} active books with untracked stock; the catalog has "
            f"{len(books)}: run `make seed` first"
        )
    return books


def order_body(rng: random.Random, books: Sequence[Book]) -> dict[str, Any]:
    lines = rng.sample(books, ORDER_ITEMS)
    return {"items": [{"book_id": book.id, "quantity": 1} for book in lines]}


async def last_order_id(url: str) -> int:
    return int(await fetch_value(url, "SELECT coalesce(max(id), 0) FROM orders") or 0)


async def sample_order_ids(url: str) -> list[int]:
    sql = "SELECT id FROM orders ORDER BY random() LIMIT %s"
    return [row[0] for row in await fetch_all(url, sql, (ID_SAMPLE_SIZE,))]


@dataclass(frozen=True)
class Settled:
    seconds: float
    pending: int


async def settle(url: str, *, after_id: int, table: str = "orders") -> Settled:
    """Wait until the rows of `table` (orders, borrows) after `after_id` have left
    `pending`, or stop making progress."""
    started = last_progress = time.perf_counter()
    lowest: int | None = None
    while True:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cursor = await conn.execute(
                f"SELECT count(*) FROM {table} WHERE id > %s AND status = 'pending'",  # noqa: S608
                (after_id,),
            )
            row = await cursor.fetchone()
        pending = int(row[0]) if row else 0
        now = time.perf_counter()
        if lowest is None or pending < lowest:
            lowest, last_progress = pending, now
        if (
            pending == 0
            or now - last_progress > SETTLE_PATIENCE_S
            or now - started > SETTLE_LIMIT_S
        ):
            return Settled(now - started, pending)
        await asyncio.sleep(0.25)


def settled_note(what: str, orders: int, settled: Settled, noun: str = "orders") -> str:
    if settled.pending:
        return (
            f"{what}: {settled.pending:,} of {orders:,} {noun} still pending after waiting "
            f"{settled.seconds:.1f} s (are the stack's relay and workers running?)"
        )
    return f"{what}: the saga settled all {orders:,} {noun} {settled.seconds:.1f} s after the last"


async def run_orders(options: Options) -> Report:
    report = Report("orders")
    load = options.load
    await require_service("orders", options.orders_url)
    await require_orders_database(options.orders_database_url)
    books = await untracked_books(options.books_database_url)
    pool_size = api_pool_size(OrdersSettings.from_env())
    report.heading = (
        f"orders: API {options.orders_url}, database {describe(options.orders_database_url)}; "
        f"orders of {ORDER_ITEMS} books with untracked stock; {load.describe()}"
    )
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets

    async with user_clients(options.orders_url, load.concurrency, key_headers(options)) as clients:
        ids: list[int] = []

        async def place(user: int) -> None:
            expect(await clients[user].post("/v1/orders", json=order_body(rng, books)), 201)

        async def get_by_id(user: int) -> None:
            expect(await clients[user].get(f"/v1/orders/{rng.choice(ids)}"), 200)

        before = await last_order_id(options.orders_database_url)
        report.summaries.append(
            await scenario(f"POST /v1/orders ({ORDER_ITEMS} items)", place, load)
        )
        placed = await last_order_id(options.orders_database_url) - before
        print("  waiting for the saga to settle ...", file=sys.stderr, flush=True)
        settled = await settle(options.orders_database_url, after_id=before)
        ids.extend(await sample_order_ids(options.orders_database_url))
        api, raw = await api_and_raw(
            report.summaries,
            load,
            ("GET /v1/orders/{id}", get_by_id),
            ("raw psycopg SELECT order + items", raw_order_by_id(ids, rng)),
            Baseline(options.orders_database_url, pool_size),
        )

    report.notes.append(settled_note("after POST (warm-up included)", placed, settled))
    report.notes.append(
        f"raw baseline: the repository's two SELECTs (order, then its items) on one "
        f"connection of a psycopg AsyncConnectionPool of {pool_size} (the API's pool size), "
        "same users and ids"
    )
    report.notes.append(ratio_note(api, raw))
    return report


def raw_order_by_id(ids: Sequence[int], rng: random.Random) -> Query:
    async def select_by_id(conn: psycopg.AsyncConnection[Any]) -> None:
        order_id = rng.choice(ids)
        cursor = await conn.execute(ORDER_BY_ID_SQL, (order_id,))
        if await cursor.fetchone() is None:
            raise LookupError("order not found")
        cursor = await conn.execute(ORDER_ITEMS_SQL, ([order_id],))
        await cursor.fetchall()

    return select_by_id


async def status_counts(url: str, ids: Sequence[int]) -> dict[str, int]:
    sql = "SELECT status, count(*) FROM orders WHERE id = ANY(%s) GROUP BY status"
    return {status: count for status, count in await fetch_all(url, sql, (list(ids),))}
