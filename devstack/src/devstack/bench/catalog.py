"""The books section: catalog reads and writes next to a raw psycopg read of a book."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from books.config import get_settings
from books.seed import SeedError, demo_rows, describe, progress_printer, seed_books
from devstack.bench.load import expect, scenario, user_clients
from devstack.bench.raw import Baseline, Query, api_and_raw, api_pool_size, raw_scenario
from devstack.bench.report import Report, ratio_note
from devstack.bench.stack import (
    ID_SAMPLE_SIZE,
    Options,
    fetch_all,
    fetch_value,
    key_headers,
    service_is_up,
)

# The same columns the books API reads for `GET /v1/books/{id}`.
BOOK_BY_ID_SQL = (
    "SELECT id, title, author, description, price, active, image, stock, created_at,"
    " updated_at FROM books WHERE id = %s AND active"
)
DEEP_OFFSET = 50_000
# A deep page as a plain OFFSET query, and as the books repository runs it: the page's ids
# first (an index-only scan over the skipped rows), then their rows.
DEEP_PAGE_PLAIN_SQL = (
    "SELECT id, title, author, description, price, active, image, stock, created_at,"
    " updated_at FROM books WHERE active ORDER BY created_at DESC, id DESC"
    " LIMIT 20 OFFSET %s"
)
DEEP_PAGE_IDS_FIRST_SQL = (
    "SELECT id, title, author, description, price, active, image, stock, created_at,"
    " updated_at FROM books JOIN (SELECT id FROM books WHERE active"
    " ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET %s) AS page USING (id)"
    " ORDER BY created_at DESC, id DESC"
)


async def count_books(url: str) -> int:
    counter = await fetch_value(url, "SELECT active_books FROM catalog_counters WHERE id = 1")
    return int(counter or 0)


async def sample_book_ids(url: str) -> list[int]:
    sql = "SELECT id FROM books WHERE active ORDER BY random() LIMIT %s"
    return [row[0] for row in await fetch_all(url, sql, (ID_SAMPLE_SIZE,))]


async def ensure_books(options: Options, report: Report) -> int | None:
    """Active books in the catalog, seeding up to the minimum when asked; None to skip."""
    url = options.books_database_url
    try:
        books = await count_books(url)
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        report.skipped = f"cannot query the books database at {describe(url)}: {reason}"
        return None
    missing = options.min_books - books
    if missing <= 0:
        return books
    if not options.seed:
        report.skipped = (
            f"the catalog has {books:,} books and the bench needs at least "
            f"{options.min_books:,}: run `SEED_BOOKS={missing} make seed` first, "
            "or `python -m devstack.bench --seed`"
        )
        return None
    print(f"seeding {missing:,} books first", file=sys.stderr)
    try:
        await asyncio.to_thread(
            seed_books, url, count=missing, progress=progress_printer(sys.stderr)
        )
    except SeedError as error:
        report.skipped = str(error)
        return None
    return options.min_books


def book_payload(rng: random.Random) -> dict[str, str]:
    title, author, description, price, _, _ = demo_rows(rng, 1, now=datetime.now(UTC))[0]
    return {"title": title, "author": author, "description": description, "price": str(price)}


async def run_books(options: Options) -> Report:
    report = Report("books")
    load = options.load
    if not await service_is_up(options.books_url):
        report.skipped = f"no books service at {options.books_url} (start it with `make run`)"
        return report
    books = await ensure_books(options, report)
    if books is None:
        return report
    ids = await sample_book_ids(options.books_database_url)
    if not ids:
        report.skipped = "the catalog has no active books"
        return report
    pool_size = api_pool_size(get_settings())
    report.heading = (
        f"books: {books:,} active books; API {options.books_url}, "
        f"database {describe(options.books_database_url)}; {load.describe()}"
    )
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets

    # Reads go without a key, as a visitor's do (no key lookup); the admin key writes.
    keyed = key_headers(options)
    async with user_clients(options.books_url, load.concurrency) as clients:

        async def health(user: int) -> None:
            expect(await clients[user].get("/health"), 200)

        async def get_by_id(user: int) -> None:
            expect(await clients[user].get(f"/v1/books/{rng.choice(ids)}"), 200)

        async def first_page(user: int) -> None:
            expect(await clients[user].get("/v1/books", params={"limit": 20}), 200)

        async def deep_page(user: int) -> None:
            params = {"limit": 20, "offset": DEEP_OFFSET}
            expect(await clients[user].get("/v1/books", params=params), 200)

        async def create(user: int) -> None:
            expect(
                await clients[user].post("/v1/books", json=book_payload(rng), headers=keyed), 201
            )

        report.summaries.append(await scenario("GET /health (lightest request)", health, load))
        api, raw = await api_and_raw(
            report.summaries,
            load,
            ("GET /v1/books/{id}", get_by_id),
            ("raw psycopg SELECT by id", raw_book_by_id(ids, rng)),
            Baseline(options.books_database_url, pool_size),
        )
        report.summaries.append(await scenario("GET /v1/books?limit=20", first_page, load))
        report.summaries.append(
            await scenario(f"GET /v1/books?limit=20&offset={DEEP_OFFSET}", deep_page, load)
        )
        for name, sql in [
            (f"raw psycopg page at offset {DEEP_OFFSET:,}: plain OFFSET", DEEP_PAGE_PLAIN_SQL),
            (f"raw psycopg page at offset {DEEP_OFFSET:,}: ids first", DEEP_PAGE_IDS_FIRST_SQL),
        ]:
            report.summaries.append(
                await raw_scenario(
                    name, raw_deep_page(sql), options.books_database_url, load, pool_size
                )
            )
        report.summaries.append(await scenario("POST /v1/books", create, load))

    report.notes.append(
        "GET /health bounds what this client can measure: an API row close to it is limited"
        " by the load generator, not the API"
    )
    report.notes.append(
        f"raw baseline: the API's SELECT by id through a psycopg AsyncConnectionPool of "
        f"{pool_size} connections (the API's pool size), same users and ids"
    )
    report.notes.append(ratio_note(api, raw))
    report.notes.append(
        "deep page: the API runs the 'ids first' form (the page's ids from the list index,"
        " then their rows); 'plain OFFSET' is the same page read row by row, for comparison"
    )
    return report


def raw_book_by_id(ids: Sequence[int], rng: random.Random) -> Query:
    async def select_by_id(conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await conn.execute(BOOK_BY_ID_SQL, (rng.choice(ids),))
        if await cursor.fetchone() is None:
            raise LookupError("book not found")

    return select_by_id


def raw_deep_page(sql: str) -> Query:
    async def select_page(conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await conn.execute(sql, (DEEP_OFFSET,))
        await cursor.fetchall()

    return select_page
