"""The books section: catalog reads and writes next to a raw psycopg read of a book."""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import psycopg
from psycopg import sql

from books.catalog.reads import BOOK_BY_ID, Statement, page_with_total_statement
from books.catalog.schemas import BookListQuery
from books.config import get_settings
from books.seed import (
    SeedError,
    demo_rows,
    describe,
    phase_printer,
    progress_printer,
    seed_books,
)
from devstack.bench.cpu import cpu_meter
from devstack.bench.floor import floor_processes, floor_server
from devstack.bench.load import (
    REQUEST_TIMEOUT_S,
    Load,
    Summary,
    expect,
    open_loop,
    scenario,
    summarize_run,
    user_clients,
)
from devstack.bench.raw import Baseline, Query, api_pool_size, raw_scenario
from devstack.bench.report import Report, ratio_note, versus_p95, versus_rps
from devstack.bench.stack import (
    ID_SAMPLE_SIZE,
    Options,
    fetch_all,
    fetch_value,
    key_headers,
    service_is_up,
)
from devstack.bench.wrk import WrkMissing, wrk_binary, wrk_scenario
from servicekit.pagination import encode_cursor

COUNTER_SQL = "SELECT active_books FROM catalog_counters WHERE id = 1"
MANY_CONNECTIONS = (64, 256)
# The open-loop rows send GETs at this share of the rate the API served at `--concurrency`.
OPEN_LOOP_SHARE = 0.5
# A deep page as a plain OFFSET query, and as OFFSET over the list index alone: the page's
# ids first (an index-only scan over the skipped rows), then their rows. The API's own
# statement (`deep_page_statement`) starts at the page's day instead.
DEEP_PAGE_PLAIN_SQL = (
    "SELECT id, title, author, description, price, active, image, stock, copies_total,"
    " copies_available, created_at, updated_at FROM books WHERE active"
    " ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET %s"
)
DEEP_PAGE_IDS_FIRST_SQL = (
    "SELECT id, title, author, description, price, active, image, stock, copies_total,"
    " copies_available, created_at, updated_at FROM books JOIN (SELECT id FROM books WHERE active"
    " ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET %s) AS page USING (id)"
    " ORDER BY created_at DESC, id DESC"
)


async def open_loop_by_id(
    url: str, ids: Sequence[int], rng: random.Random, connections: int, rate: float, load: Load
) -> Summary:
    """GET /v1/books/{id} at `rate` per second over `connections` open connections.

    Sent with aiohttp, not the httpx of the other rows: about 80 µs of this process's CPU
    per request here against httpx's 500, so at the rates of these rows the client keeps
    its schedule instead of lagging behind it (a lag that would show as latency)."""
    name = f"GET /v1/books/{{id}} at {rate:,.0f}/s over {connections} connections (open loop)"
    print(f"  {name} ...", file=sys.stderr, flush=True)
    total = max(1, round(rate * load.duration_s))
    if load.max_requests is not None:
        total = min(total, load.max_requests)
    latencies_ms: list[float] = []
    errors: list[str] = []
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=1), timeout=timeout)
            )
            for _ in range(connections)
        ]
        # Every connection open before the first request is due.
        await asyncio.gather(*(_get_ok(session, "/livez") for session in sessions))
        turns = itertools.cycle(sessions)

        async def get(due: float) -> None:
            try:
                await _get_ok(next(turns), f"/v1/books/{rng.choice(ids)}")
            except Exception as error:  # every failure is a data point, not a crash
                errors.append(str(error) or type(error).__name__)
                return
            latencies_ms.append((time.perf_counter() - due) * 1000)

        with cpu_meter() as cpu:
            seconds = await open_loop(rate, total, get)
    return summarize_run(name, latencies_ms, errors, seconds, cpu)


async def _get_ok(session: aiohttp.ClientSession, path: str) -> None:
    async with session.get(path) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")


async def count_books(url: str) -> int:
    counter = await fetch_value(url, COUNTER_SQL)
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
            seed_books,
            url,
            count=missing,
            progress=progress_printer(sys.stderr),
            phase=phase_printer(sys.stderr),
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
    try:
        wrk_binary()
    except WrkMissing as missing:
        report.skipped = str(missing)
        return report
    books = await ensure_books(options, report)
    if books is None:
        return report
    ids = await sample_book_ids(options.books_database_url)
    if not ids:
        report.skipped = "the catalog has no active books"
        return report
    keyed = key_headers(options)
    pool_size = api_pool_size(get_settings())
    deep = options.deep_offset
    report.heading = (
        f"books: {books:,} active books; API {options.books_url}, "
        f"database {describe(options.books_database_url)}; {load.describe()}; "
        "HTTP load from wrk"
    )
    baseline = Baseline(options.books_database_url, pool_size)
    url = options.books_url
    rows = report.summaries

    async def raw(name: str, query: Query) -> Summary:
        return await raw_scenario(name, query, baseline.url, load, baseline.pool_size)

    # Reads go without a key, as a visitor's do (no key lookup); the admin key writes.
    rows.append(await wrk_scenario("GET /health (lightest request)", url, ["/health"], load))
    book_paths = [f"/v1/books/{i}" for i in ids]
    by_id = await wrk_scenario("GET /v1/books/{id}", url, book_paths, load)
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets
    raw_by_id = await raw("raw psycopg SELECT by id", raw_book_by_id(ids, rng))
    async with floor_server(options.books_database_url) as floor_url:
        floor = await wrk_scenario(
            "GET /v1/books/{id}, bare FastAPI (the framework's floor)", floor_url, book_paths, load
        )
    rows += [versus_rps(by_id, raw_by_id, "raw"), raw_by_id, versus_rps(floor, raw_by_id, "raw")]
    # Many open connections (shop frontends' pools): no errors, and what queueing costs.
    for connections in MANY_CONNECTIONS:
        many = replace(load, concurrency=connections)
        name = f"GET /v1/books/{{id}}, {connections} connections"
        rows.append(await wrk_scenario(name, url, book_paths, many))
    # The same connections at a steady rate the API can serve: the tail latency of a
    # frontend fleet's traffic, which a closed loop at that many connections cannot show.
    rate = max(1.0, OPEN_LOOP_SHARE * by_id.rps)
    for connections in MANY_CONNECTIONS:
        rows.append(await open_loop_by_id(url, ids, rng, connections, rate, load))

    first = await wrk_scenario("GET /v1/books?limit=20", url, ["/v1/books?limit=20"], load)
    raw_first = await raw("raw psycopg page 1 and its total", raw_first_page)
    rows += [versus_rps(first, raw_first, "raw"), raw_first]
    offset_path = f"/v1/books?limit=20&offset={deep}"
    deep_page = await wrk_scenario(f"GET {offset_path}", url, [offset_path], load)
    rows.append(versus_p95(deep_page, first, "page 1"))
    deep_statements: list[tuple[str, Statement]] = [
        ("plain OFFSET", (sql.SQL(DEEP_PAGE_PLAIN_SQL), [deep])),
        ("ids first", (sql.SQL(DEEP_PAGE_IDS_FIRST_SQL), [deep])),
        (
            "the API's (from its day), and total",
            page_with_total_statement(BookListQuery(limit=20, offset=deep)),
        ),
    ]
    for form, (statement, params) in deep_statements:
        name = f"raw psycopg page at offset {deep:,}: {form}"
        rows.append(await raw(name, raw_deep_page(statement, params)))
    cursor_first = await wrk_scenario(
        "GET /v1/books?limit=20&after= (cursor, page 1)", url, ["/v1/books?limit=20&after="], load
    )
    rows.append(cursor_first)
    if (cursor := await cursor_at(options.books_database_url, deep)) is not None:
        cursor_path = f"/v1/books?limit=20&after={cursor}"
        cursor_deep = await wrk_scenario(
            f"GET /v1/books?limit=20&after=<cursor at {deep:,}>", url, [cursor_path], load
        )
        rows.append(versus_p95(cursor_deep, cursor_first, "cursor page 1"))

    async with user_clients(options.books_url, load.concurrency) as clients:

        async def create(user: int) -> None:
            expect(
                await clients[user].post("/v1/books", json=book_payload(rng), headers=keyed), 201
            )

        rows.append(await scenario("POST /v1/books (asyncio client)", create, load))

    report.notes.append(
        f"raw baselines: the API's statements through a psycopg AsyncConnectionPool of "
        f"{pool_size} connections (the API's pool size) driven by {load.concurrency} asyncio "
        "users; the API rows are wrk at as many connections"
    )
    report.notes.append(ratio_note(by_id, raw_by_id))
    report.notes.append(
        "the framework's floor: the same statement in a FastAPI endpoint with nothing else"
        f" (`devstack.bench.floor`), {floor_processes()} uvicorn processes like the API's;"
        " the API's distance from it is the cost of its own path (request ids, metrics, access"
        " log, rate limits, dependencies, problem handlers)"
    )
    report.notes.append(
        f"open loop: GETs sent at {OPEN_LOOP_SHARE:.0%} of the rate of GET /v1/books/{{id}} "
        "above, whatever the answers' pace, round robin over that many kept-alive "
        "connections of an aiohttp client; latency counted from when each request was due "
        "(no coordinated omission: a stall shows in the percentiles, not as a slower load)"
    )
    report.notes.append(
        "deep page: the API finds the page's first day from the day counts and walks the list"
        " index from that day's end (`books.catalog.reads`); 'plain OFFSET' reads every"
        " skipped book, 'ids first' skips them in the list index alone (the API's form before);"
        " a cursor page is an index range from its position"
    )
    return report


async def cursor_at(url: str, offset: int) -> str | None:
    """The cursor of the book at `offset` in list order (the page after it is that deep)."""
    rows = await fetch_all(
        url,
        "SELECT created_at, id FROM books WHERE active ORDER BY created_at DESC, id DESC"
        " OFFSET %s LIMIT 1",
        (max(0, offset - 1),),
    )
    return encode_cursor(rows[0][0], rows[0][1]) if rows else None


# Page 1 with its total, the statement the API runs (a `total` column on every row).
FIRST_PAGE = page_with_total_statement(BookListQuery(limit=20))


async def raw_first_page(conn: psycopg.AsyncConnection[Any]) -> None:
    statement, params = FIRST_PAGE
    await (await conn.execute(statement, params)).fetchall()


def raw_book_by_id(ids: Sequence[int], rng: random.Random) -> Query:
    async def select_by_id(conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await conn.execute(BOOK_BY_ID, (rng.choice(ids),))
        if await cursor.fetchone() is None:
            raise LookupError("book not found")

    return select_by_id


def raw_deep_page(statement: sql.SQL | sql.Composed, params: Sequence[object]) -> Query:
    async def select_page(conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await conn.execute(statement, params)
        await cursor.fetchall()

    return select_page
