"""Benchmarks of the running stack: `python -m devstack.bench` (what `make bench` runs).

Load generator: our own asyncio client on httpx, not locust or oha. Reasons:

- The baseline must run in the same run at the same concurrency, measured the same way.
  One asyncio process drives both the API (httpx) and the raw driver (psycopg's
  AsyncConnectionPool) with the same worker loop, clock and percentile code, so the
  API/raw ratio compares like with like.
- Nothing to install: httpx and psycopg are already dependencies; oha/wrk are extra
  binaries, and they cannot vary POST bodies per request.
- The machine has 2 cores shared by the API, PostgreSQL and the load generator. Locust's
  gevent users cost more CPU per request than an asyncio loop on uvloop, so locust would
  take cores the API needs and measure itself rather than the API.
- Each virtual user has its own httpx client with one keep-alive connection: that is
  what 32 independent clients look like, and it avoids the contention of one shared httpx
  pool under many concurrent requests (encode/httpx#3215; here a shared client made
  `GET /health` 5x slower).
- httpx parses HTTP in pure Python (about 1 ms of CPU per request here), so the section
  first measures `GET /health` as the ceiling of what the client can drive; aiohttp's C
  parser would raise it, at the price of a second HTTP client in the lock file.

Every scenario is bounded (a duration, optionally a request cap, and per-request
timeouts) and only loopback targets are accepted. The load generator shares the cores
with what it measures: read absolute numbers as "on this machine", and the API/raw
ratio as the useful figure.

A section benchmarks one service: it checks the service is up (or is skipped with a
note), prepares data, and runs scenarios, each one `measure(...)` call:

- books: reads and writes of the catalog next to a raw psycopg read of a book.
- orders: placing an order of 3 books and reading one back, next to a raw psycopg read of
  an order with its items. Placing orders sets the stack's saga going; the section waits
  for it to settle before reading, so the reads do not share the cores with it.
- workers: jobs/s of the worker setup `python -m workers.worker` runs, for a no-op job and
  for the reservation job, next to RQ's hello world, all from `workers.bench` in this run.
  They run on their own Redis database and queues with workers started for the occasion,
  so the stack's own workers never see these jobs.
- saga: a steady open-loop order rate against the stack's relay and workers, and how long
  each order took from its commit to `confirmed`.

Orders are placed for books whose stock is not tracked, so the saga never rejects one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
import uvloop
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

import workers.bench as worker_bench
from books.config import get_settings
from books.seed import SeedError, database_url, demo_rows, describe, progress_printer, seed_books
from devstack.run import StackConfig
from orders.config import Settings as OrdersSettings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
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
ID_SAMPLE_SIZE = 10_000
REQUEST_TIMEOUT_S = 10.0
ORDER_ITEMS = 3
# Waiting for the saga: give up when the pending count stops falling for this long.
SETTLE_PATIENCE_S = 10.0
SETTLE_LIMIT_S = 180.0
WORKER_BENCH_REDIS_DB = 1
WORKER_PROCESSES = 2


@dataclass(frozen=True)
class Load:
    """How hard and how long each scenario runs."""

    concurrency: int = 32
    duration_s: float = 10.0
    max_requests: int | None = None
    warmup_s: float = 1.0


@dataclass(frozen=True)
class Summary:
    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def percentiles(latencies_ms: Sequence[float]) -> tuple[float, float, float] | None:
    """p50, p95 and p99 (linear interpolation between the closest ranks)."""
    if not latencies_ms:
        return None
    if len(latencies_ms) == 1:
        only = latencies_ms[0]
        return only, only, only
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def summarize(
    name: str,
    latencies_ms: Sequence[float],
    *,
    errors: int,
    seconds: float,
    first_error: str | None = None,
) -> Summary:
    """Latency percentiles cover successful requests only: a fast error is no success."""
    p50, p95, p99 = percentiles(latencies_ms) or (None, None, None)
    return Summary(
        name=name,
        requests=len(latencies_ms) + errors,
        errors=errors,
        seconds=seconds,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        first_error=first_error,
    )


class UnexpectedResponse(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code} from {response.request.url.path}")


def expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise UnexpectedResponse(response)


Call = Callable[[int], Awaitable[None]]
"""One request made by virtual user number N; raising counts as an error."""


async def measure(name: str, call: Call, load: Load) -> Summary:
    """Run `call` from `load.concurrency` users until the time or request budget is spent."""
    latencies_ms: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.perf_counter() + load.duration_s

    def budget_left() -> bool:
        if load.max_requests is not None and issued >= load.max_requests:
            return False
        return time.perf_counter() < deadline

    async def user(number: int) -> None:
        nonlocal issued
        while budget_left():
            issued += 1
            started = time.perf_counter()
            try:
                await call(number)
            except Exception as error:  # every failure is a data point, not a crash
                errors.append(str(error) or type(error).__name__)
            else:
                latencies_ms.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for number in range(load.concurrency):
            group.create_task(user(number))
    return summarize(
        name,
        latencies_ms,
        errors=len(errors),
        seconds=time.perf_counter() - started,
        first_error=errors[0] if errors else None,
    )


async def scenario(name: str, call: Call, load: Load) -> Summary:
    """Warm up (connections, prepared statements, caches), then measure."""
    print(f"  {name} ...", file=sys.stderr, flush=True)
    if load.warmup_s > 0:
        await measure(name, call, Load(load.concurrency, load.warmup_s, load.max_requests, 0))
    return await measure(name, call, load)


@dataclass
class Options:
    load: Load
    books_url: str
    books_database_url: str
    min_books: int
    seed: bool
    random_seed: int | None
    orders_url: str = "http://127.0.0.1:8082"
    orders_database_url: str = "postgresql://postgres@127.0.0.1:5433/orders_db"
    redis_url: str = "redis://127.0.0.1:6380/0"
    service_key: str | None = None
    worker_jobs: int = 1000
    saga_rate: float = 20.0
    saga_duration_s: float = 10.0


@dataclass
class Report:
    section: str
    heading: str = ""
    summaries: list[Summary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    rate: str = "RPS"


def is_loopback_url(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK_HOSTS


def is_loopback_database(url: str) -> bool:
    host = str(conninfo_to_dict(url).get("host", "localhost"))
    return host.startswith("/") or host in LOOPBACK_HOSTS


async def service_is_up(base_url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=3) as client:
            response = await client.get("/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def count_books(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
        cursor = await conn.execute("SELECT active_books FROM catalog_counters WHERE id = 1")
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def sample_book_ids(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT id FROM books WHERE active ORDER BY random() LIMIT %s", (ID_SAMPLE_SIZE,)
        )
        return [row[0] for row in await cursor.fetchall()]


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
    settings = get_settings()
    pool_size = settings.db_pool_size + settings.db_max_overflow
    report.heading = (
        f"books: {books:,} active books; API {options.books_url}, "
        f"database {describe(options.books_database_url)}; {load.concurrency} concurrent "
        f"users, {load.duration_s:g} s per scenario after {load.warmup_s:g} s warm-up"
    )
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets

    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=options.books_url,
                    limits=httpx.Limits(max_connections=1),
                    timeout=REQUEST_TIMEOUT_S,
                )
            )
            for _ in range(load.concurrency)
        ]

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
            expect(await clients[user].post("/v1/books", json=book_payload(rng)), 201)

        report.summaries.append(await scenario("GET /health (lightest request)", health, load))
        api = await scenario("GET /v1/books/{id}", get_by_id, load)
        report.summaries.append(api)
        raw = await raw_scenario(
            "raw psycopg SELECT by id",
            options.books_database_url,
            raw_book_by_id(ids, rng),
            load,
            pool_size,
        )
        report.summaries.append(raw)
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
                    name, options.books_database_url, raw_deep_page(sql), load, pool_size
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


async def raw_scenario(
    name: str,
    url: str,
    query: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
    load: Load,
    pool_size: int,
) -> Summary:
    """`query` run by the same users through a psycopg pool the size of the API's."""
    async with AsyncConnectionPool(
        url, min_size=pool_size, max_size=pool_size, open=False, timeout=REQUEST_TIMEOUT_S
    ) as pool:
        await pool.wait()

        async def run_query(user: int) -> None:
            async with pool.connection() as conn:
                await query(conn)

        return await scenario(name, run_query, load)


def raw_book_by_id(
    ids: Sequence[int], rng: random.Random
) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    async def select_by_id(conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await conn.execute(BOOK_BY_ID_SQL, (rng.choice(ids),))
        if await cursor.fetchone() is None:
            raise LookupError("book not found")

    return select_by_id


def raw_deep_page(sql: str) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    async def select_page(conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await conn.execute(sql, (DEEP_OFFSET,))
        await cursor.fetchall()

    return select_page


def ratio_note(api: Summary, raw: Summary) -> str:
    if not (api.rps and raw.rps and api.p50_ms and raw.p50_ms):
        return "API/raw: not enough successful requests for a ratio"
    return (
        f"API/raw for GET by id: RPS {api.rps / raw.rps:.2f}x, p50 {api.p50_ms / raw.p50_ms:.2f}x"
    )


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class SkipSection(Exception):
    """The section cannot run; the message says why and what to do."""


async def require_service(name: str, base_url: str) -> None:
    if not await service_is_up(base_url):
        raise SkipSection(f"no {name} service at {base_url} (start it with `make run`)")


async def require_orders_database(url: str) -> None:
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
            await conn.execute("SELECT 1 FROM orders LIMIT 1")
    except psycopg.Error as error:
        where = describe(url)
        raise SkipSection(
            f"cannot query the orders database at {where}: {first_line(error)}"
        ) from error


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
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT coalesce(max(id), 0) FROM orders")
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def sample_order_ids(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT id FROM orders ORDER BY random() LIMIT %s", (ID_SAMPLE_SIZE,)
        )
        return [row[0] for row in await cursor.fetchall()]


@dataclass(frozen=True)
class Settled:
    seconds: float
    pending: int


async def settle(url: str, *, after_id: int) -> Settled:
    """Wait until the orders after `after_id` have left `pending`, or stop making progress."""
    started = last_progress = time.perf_counter()
    lowest: int | None = None
    while True:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM orders WHERE id > %s AND status = 'pending'", (after_id,)
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


def settled_note(what: str, orders: int, settled: Settled) -> str:
    if settled.pending:
        return (
            f"{what}: {settled.pending:,} of {orders:,} orders still pending after waiting "
            f"{settled.seconds:.1f} s (are the stack's relay and workers running?)"
        )
    return f"{what}: the saga settled all {orders:,} orders {settled.seconds:.1f} s after the last"


async def run_orders(options: Options) -> Report:
    report = Report("orders")
    load = options.load
    await require_service("orders", options.orders_url)
    await require_orders_database(options.orders_database_url)
    books = await untracked_books(options.books_database_url)
    settings = OrdersSettings.from_env()
    pool_size = settings.db_pool_size + settings.db_max_overflow
    report.heading = (
        f"orders: API {options.orders_url}, database {describe(options.orders_database_url)}; "
        f"orders of {ORDER_ITEMS} books with untracked stock; {load.concurrency} concurrent "
        f"users, {load.duration_s:g} s per scenario after {load.warmup_s:g} s warm-up"
    )
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets

    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=options.orders_url,
                    limits=httpx.Limits(max_connections=1),
                    timeout=REQUEST_TIMEOUT_S,
                )
            )
            for _ in range(load.concurrency)
        ]
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
        api = await scenario("GET /v1/orders/{id}", get_by_id, load)
        report.summaries.append(api)
        raw = await raw_scenario(
            "raw psycopg SELECT order + items",
            options.orders_database_url,
            raw_order_by_id(ids, rng),
            load,
            pool_size,
        )
        report.summaries.append(raw)

    report.notes.append(settled_note("after POST (warm-up included)", placed, settled))
    report.notes.append(
        f"raw baseline: the repository's two SELECTs (order, then its items) on one "
        f"connection of a psycopg AsyncConnectionPool of {pool_size} (the API's pool size), "
        "same users and ids"
    )
    report.notes.append(ratio_note(api, raw))
    return report


def raw_order_by_id(
    ids: Sequence[int], rng: random.Random
) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    async def select_by_id(conn: psycopg.AsyncConnection[Any]) -> None:
        order_id = rng.choice(ids)
        cursor = await conn.execute(ORDER_BY_ID_SQL, (order_id,))
        if await cursor.fetchone() is None:
            raise LookupError("order not found")
        cursor = await conn.execute(ORDER_ITEMS_SQL, ([order_id],))
        await cursor.fetchall()

    return select_by_id


def redis_database(url: str, db: int) -> str:
    """The same Redis server, another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def require_redis(url: str) -> None:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as client:
            client.ping()
    except redis.RedisError as error:
        raise SkipSection(
            f"no Redis at {url} (start it with `make run`): {first_line(error)}"
        ) from error


async def service_key(options: Options) -> str:
    """SERVICE_KEY, else the key `make run` generated for the stack, checked at books with
    a release of a reference that never existed (harmless)."""
    path = StackConfig.from_env().data_dir / "service_key"
    key = options.service_key or (path.read_text().strip() if path.exists() else "")
    if not key:
        raise SkipSection(f"no SERVICE_KEY and no {path} (start the stack with `make run`)")
    await require_service("books", options.books_url)
    async with httpx.AsyncClient(base_url=options.books_url, timeout=5) as client:
        response = await client.post(
            "/internal/v1/stock/releases",
            json={"reference": "bench:key-check"},
            headers={"X-Service-Key": key},
        )
    if response.status_code != 200:
        raise SkipSection(f"books answered HTTP {response.status_code} to the service key")
    return key


async def pending_orders_without_outbox(
    url: str, books: Sequence[Book], count: int, rng: random.Random
) -> list[int]:
    """Pending orders written straight to the database, as `POST /v1/orders` writes them but
    without the outbox row: the stack's relay never hands them to its workers."""
    ids: list[int] = []
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        for _ in range(count):
            lines = rng.sample(books, ORDER_ITEMS)
            total = sum((book.price for book in lines), Decimal(0))
            cursor = await conn.execute(
                "INSERT INTO orders (status, total_price) VALUES ('pending', %s) RETURNING id",
                (total,),
            )
            row = await cursor.fetchone()
            assert row is not None
            ids.append(row[0])
            async with conn.cursor() as items:
                await items.executemany(
                    "INSERT INTO order_items (order_id, book_id, book_title, book_author,"
                    " quantity, unit_price, total_price) VALUES (%s, %s, %s, %s, 1, %s, %s)",
                    [(row[0], b.id, b.title, b.author, b.price, b.price) for b in lines],
                )
    return ids


async def order_lines(url: str, ids: Sequence[int]) -> dict[int, list[dict[str, int]]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT order_id, book_id, quantity FROM order_items WHERE order_id = ANY(%s)"
            " ORDER BY id",
            (list(ids),),
        )
        lines: dict[int, list[dict[str, int]]] = {}
        for order_id, book_id, quantity in await cursor.fetchall():
            lines.setdefault(order_id, []).append({"book_id": book_id, "quantity": quantity})
    return lines


async def status_counts(url: str, ids: Sequence[int]) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT status, count(*) FROM orders WHERE id = ANY(%s) GROUP BY status", (list(ids),)
        )
        return {status: count for status, count in await cursor.fetchall()}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Environment for the worker processes `workers.bench` forks."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def worker_row(
    name: str,
    setup: worker_bench.Setup,
    redis_url: str,
    jobs: int,
    *,
    timeout_s: float | None = None,
    **job: Any,
) -> Summary:
    """One `workers.bench.measure` as a table row: jobs, failures, jobs/s."""
    print(f"  {name} ...", file=sys.stderr, flush=True)
    if timeout_s is None:
        # Start-up, then at least 2 jobs/s: a setup slower than that has failed anyway.
        timeout_s = 60 + jobs / 2
    started = time.perf_counter()
    try:
        row = worker_bench.measure(setup, redis_url, jobs=jobs, timeout_s=timeout_s, **job)
    except (RuntimeError, TimeoutError, redis.RedisError) as error:
        return Summary(
            name, jobs, jobs, time.perf_counter() - started, None, None, None, first_line(error)
        )
    return Summary(name, row.jobs, 0, row.seconds, None, None, None)


async def run_workers(options: Options) -> Report:
    report = Report("workers", rate="jobs/s")
    redis_url = redis_database(options.redis_url, WORKER_BENCH_REDIS_DB)
    require_redis(redis_url)
    jobs = options.worker_jobs
    report.heading = (
        f"workers: {jobs:,} jobs per row on {redis_url} (its own queues, not the stack's), "
        "from enqueued to all finished, worker start-up included"
    )
    chosen = worker_bench.chosen_setup(WORKER_PROCESSES)
    chosen_name = f"{chosen.name} ({chosen.processes} processes)"
    # Synchronous on purpose: forking the worker processes from the loop's own thread.
    baseline = worker_row(
        "rq hello world (Worker, pickle, 1 process)",
        worker_bench.hello_world_setup(),
        redis_url,
        jobs,
    )
    noop = worker_row(f"{chosen_name}: no-op job", chosen, redis_url, jobs)
    report.summaries += [baseline, noop]
    name = f"{chosen_name}: place_order job"
    try:
        report.summaries.append(await reservation_row(options, report, chosen, name, redis_url))
    except SkipSection as skip:
        report.notes.append(f"{name}: skipped - {skip}")
    for row in report.summaries[1:]:
        if baseline.rps and row.rps and not row.errors:
            report.notes.append(f"{row.name}: {row.rps / baseline.rps:.2f}x the hello world")
    return report


async def reservation_row(
    options: Options,
    report: Report,
    setup: worker_bench.Setup,
    name: str,
    redis_url: str,
) -> Summary:
    """`workers.stock.place_order` on real pending orders: a reservation at books and a
    confirmation at orders per job, through the stack's services."""
    key = await service_key(options)
    await require_service("orders", options.orders_url)
    await require_orders_database(options.orders_database_url)
    books = await untracked_books(options.books_database_url)
    url = options.orders_database_url
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets
    ids = await pending_orders_without_outbox(url, books, options.worker_jobs, rng)
    lines = await order_lines(url, ids)
    worker_env = {
        "SERVICE_KEY": key,
        "WORKERS_BOOKS_URL": options.books_url,
        "WORKERS_ORDERS_URL": options.orders_url,
    }
    with environment(worker_env):
        row = worker_row(
            name,
            setup,
            redis_url,
            len(ids),
            function="workers.stock.place_order",
            payload=lambda number: {"order_id": ids[number], "lines": lines[ids[number]]},
        )
    counts = await status_counts(url, ids)
    outcome = ", ".join(f"{count:,} {status}" for status, count in sorted(counts.items()))
    report.notes.append(
        f"place_order job: pending orders of {ORDER_ITEMS} untracked books written straight "
        f"to the orders database (no outbox row, so the stack's relay never sees them); "
        f"each job reserves at books and confirms at orders over HTTP; afterwards: {outcome}"
    )
    return row


async def run_saga(options: Options) -> Report:
    report = Report("saga", rate="orders/s")
    await require_service("orders", options.orders_url)
    await require_orders_database(options.orders_database_url)
    books = await untracked_books(options.books_database_url)
    rate, duration = options.saga_rate, options.saga_duration_s
    total = max(1, round(rate * duration))
    report.heading = (
        f"saga: {total:,} orders of {ORDER_ITEMS} books placed at {rate:g}/s (open loop) "
        f"against {options.orders_url}, settled by the stack's relay and workers"
    )
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets
    url = options.orders_database_url
    ids: list[int] = []
    latencies_ms: list[float] = []
    errors: list[str] = []

    async with httpx.AsyncClient(base_url=options.orders_url, timeout=REQUEST_TIMEOUT_S) as client:

        async def place() -> None:
            started = time.perf_counter()
            try:
                response = await client.post("/v1/orders", json=order_body(rng, books))
                expect(response, 201)
            except Exception as error:  # every failure is a data point, not a crash
                errors.append(str(error) or type(error).__name__)
                return
            latencies_ms.append((time.perf_counter() - started) * 1000)
            ids.append(int(response.json()["id"]))

        print(f"  {total} orders at {rate:g}/s ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for number in range(total):
                delay = started + number / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(place())
        seconds = time.perf_counter() - started

    print("  waiting for the saga to settle ...", file=sys.stderr, flush=True)
    settled = await settle(url, after_id=min(ids) - 1) if ids else Settled(0.0, 0)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT extract(epoch FROM updated_at - created_at) * 1000 FROM orders"
            " WHERE id = ANY(%s) AND status = 'confirmed'",
            (ids,),
        )
        saga_ms = [float(row[0]) for row in await cursor.fetchall()]
    counts = await status_counts(url, ids)
    report.summaries.append(
        summarize(
            f"POST /v1/orders at {rate:g}/s",
            latencies_ms,
            errors=len(errors),
            seconds=seconds,
            first_error=errors[0] if errors else None,
        )
    )
    report.summaries.append(
        summarize(
            "commit -> confirmed",
            saga_ms,
            errors=len(ids) - len(saga_ms),
            seconds=seconds,
            first_error=None if len(saga_ms) == len(ids) else "some orders were not confirmed",
        )
    )
    outcome = ", ".join(
        f"{counts.get(status, 0):,} {status}" for status in ("confirmed", "rejected", "pending")
    )
    report.notes.append(f"outcome of the {len(ids):,} orders placed: {outcome}")
    report.notes.append(settled_note("after the load", len(ids), settled))
    report.notes.append(
        "commit -> confirmed: the order's created_at (now() of the placing transaction, just "
        "before its commit) to the updated_at the confirming UPDATE sets, both from "
        "PostgreSQL's clock; includes the relay's poll (every 0.1 s when idle), the queue, the "
        "reservation at books and the confirmation at orders"
    )
    return report


Section = Callable[[Options], Awaitable[Report]]
SECTIONS: dict[str, Section] = {
    "books": run_books,
    "orders": run_orders,
    "workers": run_workers,
    "saga": run_saga,
}


def render(reports: Sequence[Report]) -> str:
    lines: list[str] = []
    for report in reports:
        if report.skipped is not None:
            lines.append(f"{report.section}: skipped - {report.skipped}")
            continue
        header = ("scenario", "requests", "errors", report.rate, "p50 ms", "p95 ms", "p99 ms")
        rows = [header] + [
            (
                summary.name,
                f"{summary.requests:,}",
                f"{summary.errors:,}",
                f"{summary.rps:,.1f}",
                *(_ms(value) for value in (summary.p50_ms, summary.p95_ms, summary.p99_ms)),
            )
            for summary in report.summaries
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        lines.append(report.heading)
        for row in rows:
            first, *numbers = row
            lines.append(
                "  ".join(
                    [first.ljust(widths[0])]
                    + [value.rjust(width) for value, width in zip(numbers, widths[1:], strict=True)]
                )
            )
        lines.extend(
            f"  first error of {summary.name}: {summary.first_error}"
            for summary in report.summaries
            if summary.first_error
        )
        lines.extend(report.notes)
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


async def run(options: Options, sections: Sequence[str]) -> list[Report]:
    reports = []
    for name in sections:
        print(f"{name}:", file=sys.stderr, flush=True)
        try:
            reports.append(await SECTIONS[name](options))
        except SkipSection as skip:
            reports.append(Report(name, skipped=str(skip)))
    return reports


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parse_args(argv: Sequence[str] | None) -> tuple[Options, list[str]]:
    parser = argparse.ArgumentParser(
        prog="devstack.bench", description="Benchmark the running stack (`make run`)."
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(SECTIONS), help="run only these sections"
    )
    parser.add_argument("--concurrency", type=positive_int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--requests", type=positive_int, help="request cap per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument(
        "--books-url", default=os.environ.get("BENCH_BOOKS_URL", "http://127.0.0.1:8001")
    )
    parser.add_argument("--books-database-url", default=None, help="default: BOOKS_DATABASE_URL")
    parser.add_argument("--min-books", type=int, default=100_000)
    parser.add_argument("--seed", action="store_true", help="seed up to --min-books if short")
    parser.add_argument("--random-seed", type=int, default=None)
    parser.add_argument(
        "--orders-url", default=os.environ.get("BENCH_ORDERS_URL", "http://127.0.0.1:8082")
    )
    parser.add_argument("--orders-database-url", default=None, help="default: ORDERS_DATABASE_URL")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6380/0"),
        help=f"the stack's Redis; the workers section uses its database {WORKER_BENCH_REDIS_DB}",
    )
    parser.add_argument(
        "--worker-jobs", type=positive_int, default=1000, help="jobs per workers row"
    )
    parser.add_argument("--saga-rate", type=float, default=20.0, help="orders per second")
    parser.add_argument("--saga-duration", type=float, default=10.0, help="seconds of load")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    if args.saga_rate <= 0 or args.saga_duration <= 0:
        parser.error("--saga-rate and --saga-duration must be positive")
    options = Options(
        load=Load(args.concurrency, args.duration, args.requests, args.warmup),
        books_url=args.books_url.rstrip("/"),
        books_database_url=args.books_database_url or database_url(),
        min_books=args.min_books,
        seed=args.seed,
        random_seed=args.random_seed,
        orders_url=args.orders_url.rstrip("/"),
        orders_database_url=(
            args.orders_database_url or OrdersSettings.from_env().psycopg_database_url
        ),
        redis_url=args.redis_url,
        service_key=os.environ.get("SERVICE_KEY", "").strip() or None,
        worker_jobs=args.worker_jobs,
        saga_rate=args.saga_rate,
        saga_duration_s=args.saga_duration,
    )
    for url in (options.books_url, options.orders_url, options.redis_url):
        if not is_loopback_url(url):
            parser.error(f"refusing to load a non-local target: {url}")
    for url in (options.books_database_url, options.orders_database_url):
        if not is_loopback_database(url):
            parser.error(f"refusing to load a non-local database: {describe(url)}")
    return options, args.only or list(SECTIONS)


def main(argv: Sequence[str] | None = None) -> int:
    options, sections = parse_args(argv)
    load_before = os.getloadavg()[0]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        reports = runner.run(run(options, sections))
    print(render(reports))
    # Other work on the machine shares the cores with the stack: say how busy it was.
    print(
        f"\nmachine: {os.cpu_count()} cores; 1-minute load average {load_before:.2f} "
        f"at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    return 0 if any(report.skipped is None for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
