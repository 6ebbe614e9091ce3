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
note), prepares data, and runs scenarios, each one `measure(...)` call. Orders and
workers add their own section functions to `SECTIONS`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import psycopg
import uvloop
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from books.config import get_settings
from books.seed import SeedError, database_url, demo_rows, describe, progress_printer, seed_books

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The same columns the books API reads for `GET /v1/books/{id}`.
BOOK_BY_ID_SQL = (
    "SELECT id, title, author, description, price, active, image, created_at, updated_at"
    " FROM books WHERE id = %s AND active"
)
ID_SAMPLE_SIZE = 10_000
REQUEST_TIMEOUT_S = 10.0


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


@dataclass
class Report:
    section: str
    heading: str = ""
    summaries: list[Summary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


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
            params = {"limit": 20, "offset": 50_000}
            expect(await clients[user].get("/v1/books", params=params), 200)

        async def create(user: int) -> None:
            expect(await clients[user].post("/v1/books", json=book_payload(rng)), 201)

        report.summaries.append(await scenario("GET /health (lightest request)", health, load))
        api = await scenario("GET /v1/books/{id}", get_by_id, load)
        report.summaries.append(api)
        raw = await raw_book_by_id(options.books_database_url, ids, rng, load, pool_size)
        report.summaries.append(raw)
        report.summaries.append(await scenario("GET /v1/books?limit=20", first_page, load))
        report.summaries.append(
            await scenario("GET /v1/books?limit=20&offset=50000", deep_page, load)
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
    return report


async def raw_book_by_id(
    url: str, ids: Sequence[int], rng: random.Random, load: Load, pool_size: int
) -> Summary:
    async with AsyncConnectionPool(
        url, min_size=pool_size, max_size=pool_size, open=False, timeout=REQUEST_TIMEOUT_S
    ) as pool:
        await pool.wait()

        async def select_by_id(user: int) -> None:
            async with pool.connection() as conn:
                cursor = await conn.execute(BOOK_BY_ID_SQL, (rng.choice(ids),))
                if await cursor.fetchone() is None:
                    raise LookupError("book not found")

        return await scenario("raw psycopg SELECT by id", select_by_id, load)


def ratio_note(api: Summary, raw: Summary) -> str:
    if not (api.rps and raw.rps and api.p50_ms and raw.p50_ms):
        return "API/raw: not enough successful requests for a ratio"
    return (
        f"API/raw for GET by id: RPS {api.rps / raw.rps:.2f}x, p50 {api.p50_ms / raw.p50_ms:.2f}x"
    )


Section = Callable[[Options], Awaitable[Report]]
SECTIONS: dict[str, Section] = {"books": run_books}


def render(reports: Sequence[Report]) -> str:
    header = ("scenario", "requests", "errors", "RPS", "p50 ms", "p95 ms", "p99 ms")
    lines: list[str] = []
    for report in reports:
        if report.skipped is not None:
            lines.append(f"{report.section}: skipped - {report.skipped}")
            continue
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
        reports.append(await SECTIONS[name](options))
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
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    options = Options(
        load=Load(args.concurrency, args.duration, args.requests, args.warmup),
        books_url=args.books_url.rstrip("/"),
        books_database_url=args.books_database_url or database_url(),
        min_books=args.min_books,
        seed=args.seed,
        random_seed=args.random_seed,
    )
    if not is_loopback_url(options.books_url):
        parser.error(f"refusing to load a non-local target: {options.books_url}")
    if not is_loopback_database(options.books_database_url):
        where = describe(options.books_database_url)
        parser.error(f"refusing to load a non-local database: {where}")
    return options, args.only or list(SECTIONS)


def main(argv: Sequence[str] | None = None) -> int:
    options, sections = parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        reports = runner.run(run(options, sections))
    print(render(reports))
    return 0 if any(report.skipped is None for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
