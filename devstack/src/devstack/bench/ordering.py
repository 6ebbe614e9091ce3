"""The orders section: placing an order of 3 books, then reading orders back (one by id, a
page of the list) with wrk, each next to the API's own statement through a psycopg pool,
and what the saga's sections share.

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
from devstack.bench.load import Summary, expect, scenario, user_clients
from devstack.bench.raw import Query, api_pool_size, raw_scenario
from devstack.bench.report import Report, first_line, ratio_note, versus_rps
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
from devstack.bench.wrk import WrkMissing, wrk_binary, wrk_scenario
from orders.config import Settings as OrdersSettings
from orders.ordering.reads import ORDER_BY_ID, page_statement

# The statements the API runs: an order with its lines; page 1 with its lines and total.
FIRST_PAGE = page_statement(limit=20, offset=0, status=None, customer_id=None)
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
    try:
        wrk_binary()
    except WrkMissing as missing:
        raise SkipSection(str(missing)) from missing
    books = await untracked_books(options.books_database_url)
    pool_size = api_pool_size(OrdersSettings.from_env())
    report.heading = (
        f"orders: API {options.orders_url}, database {describe(options.orders_database_url)}; "
        f"orders of {ORDER_ITEMS} books with untracked stock; {load.describe()}; "
        "reads loaded by wrk"
    )
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets
    keyed = key_headers(options)
    rows = report.summaries

    async with user_clients(options.orders_url, load.concurrency, keyed) as clients:

        async def place(user: int) -> None:
            expect(await clients[user].post("/v1/orders", json=order_body(rng, books)), 201)

        before = await last_order_id(options.orders_database_url)
        rows.append(await scenario(f"POST /v1/orders ({ORDER_ITEMS} items)", place, load))
    placed = await last_order_id(options.orders_database_url) - before
    print("  waiting for the saga to settle ...", file=sys.stderr, flush=True)
    settled = await settle(options.orders_database_url, after_id=before)
    ids = await sample_order_ids(options.orders_database_url)

    async def raw(name: str, query: Query) -> Summary:
        return await raw_scenario(name, query, options.orders_database_url, load, pool_size)

    url = options.orders_url
    by_id = await wrk_scenario(
        "GET /v1/orders/{id}", url, [f"/v1/orders/{i}" for i in ids], load, headers=keyed
    )
    raw_by_id = await raw("raw psycopg SELECT order with its lines", raw_order_by_id(ids, rng))
    rows += [versus_rps(by_id, raw_by_id, "raw"), raw_by_id]
    first = await wrk_scenario(
        "GET /v1/orders?limit=20", url, ["/v1/orders?limit=20"], load, headers=keyed
    )
    raw_first = await raw("raw psycopg page 1 with its lines and total", raw_first_page)
    rows += [versus_rps(first, raw_first, "raw"), raw_first]

    report.notes.append(settled_note("after POST (warm-up included)", placed, settled))
    report.notes.append(
        f"raw baselines: the API's statement (`orders.ordering.reads`) through a psycopg "
        f"AsyncConnectionPool of {pool_size} connections (the API's pool size) driven by "
        f"{load.concurrency} asyncio users; the API rows are wrk at as many connections, "
        "with the admin key (one key lookup per request)"
    )
    report.notes.append(ratio_note(by_id, raw_by_id))
    report.notes.append(ratio_note(first, raw_first, "page 1"))
    return report


def raw_order_by_id(ids: Sequence[int], rng: random.Random) -> Query:
    async def select_by_id(conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await conn.execute(ORDER_BY_ID, (rng.choice(ids),))
        if not await cursor.fetchall():
            raise LookupError("order not found")

    return select_by_id


async def raw_first_page(conn: psycopg.AsyncConnection[Any]) -> None:
    statement, params = FIRST_PAGE
    await (await conn.execute(statement, params)).fetchall()


async def status_counts(url: str, ids: Sequence[int]) -> dict[str, int]:
    sql = "SELECT status, count(*) FROM orders WHERE id = ANY(%s) GROUP BY status"
    return {status: count for status, count in await fetch_all(url, sql, (list(ids),))}
