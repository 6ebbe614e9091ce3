"""`python -m devstack.bench`: the command line, the sections it runs, the machine's load."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import uvloop

from books.seed import database_url, describe
from devstack.bench.catalog import run_books
from devstack.bench.circulation import run_circulation
from devstack.bench.jobs import WORKER_BENCH_REDIS_DB, run_workers
from devstack.bench.lending import run_lending
from devstack.bench.load import Load
from devstack.bench.ordering import run_orders
from devstack.bench.report import Report, render
from devstack.bench.saga import run_saga
from devstack.bench.seeding import run_seed
from devstack.bench.stack import (
    Options,
    SkipSection,
    admin_key_of_stack,
    is_loopback_database,
    is_loopback_url,
)
from devstack.bench.tracing import run_tracing
from devstack.bench.web import run_web
from devstack.run import StackConfig, stack_redis_url
from orders.config import Settings as OrdersSettings


@dataclass(frozen=True)
class Scale:
    books: int
    deep_offset: int
    # Seed up to `books` without being asked: a million books is the point of the scale.
    seeds: bool


SCALES = {
    "100k": Scale(books=100_000, deep_offset=50_000, seeds=False),
    "1m": Scale(books=1_000_000, deep_offset=500_000, seeds=True),
}

Section = Callable[[Options], Awaitable[Report]]
SECTIONS: dict[str, Section] = {
    "books": run_books,
    "orders": run_orders,
    "workers": run_workers,
    "saga": run_saga,
    "lending": run_lending,
    "circulation": run_circulation,
    "web": run_web,
    "tracing": run_tracing,
    "seed": run_seed,
}


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
        "--only",
        action="append",
        choices=sorted(SECTIONS),
        help="run only these sections (default: SCENARIOS, as in `make bench SCENARIOS=lending`,"
        " comma-separated; else all)",
    )
    parser.add_argument("--concurrency", type=positive_int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--requests", type=positive_int, help="request cap per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument(
        "--books-url", default=os.environ.get("BENCH_BOOKS_URL", "http://127.0.0.1:8001")
    )
    parser.add_argument("--books-database-url", default=None, help="default: BOOKS_DATABASE_URL")
    parser.add_argument("--min-books", type=int, default=None, help="default: the scale's")
    parser.add_argument("--seed", action="store_true", help="seed up to --min-books if short")
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="100k",
        help="catalog size and depth of the deep-page rows: 100k (offset 50,000) or 1m "
        "(seeds up to 1,000,000 books first; offset 500,000), as `make bench SCALE=1m`",
    )
    parser.add_argument("--random-seed", type=int, default=None)
    parser.add_argument(
        "--orders-url", default=os.environ.get("BENCH_ORDERS_URL", "http://127.0.0.1:8082")
    )
    parser.add_argument("--orders-database-url", default=None, help="default: ORDERS_DATABASE_URL")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or stack_redis_url(StackConfig.from_env()),
        help=f"the stack's Redis; the workers section uses its database {WORKER_BENCH_REDIS_DB}",
    )
    parser.add_argument(
        "--worker-jobs", type=positive_int, default=1000, help="jobs per workers row"
    )
    parser.add_argument("--saga-rate", type=float, default=20.0, help="orders per second")
    parser.add_argument("--saga-duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument(
        "--lending-rate", type=float, default=20.0, help="borrows per second (request -> active)"
    )
    parser.add_argument(
        "--lending-duration", type=float, default=10.0, help="seconds of request -> active load"
    )
    parser.add_argument(
        "--web-url", default=os.environ.get("BENCH_WEB_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument(
        "--web-concurrency", type=positive_int, default=8, help="users of the web section"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    if args.saga_rate <= 0 or args.saga_duration <= 0:
        parser.error("--saga-rate and --saga-duration must be positive")
    if args.lending_rate <= 0 or args.lending_duration <= 0:
        parser.error("--lending-rate and --lending-duration must be positive")
    chosen = os.environ.get("SCENARIOS", "").replace(",", " ").split()
    if unknown := sorted(set(chosen) - set(SECTIONS)):
        parser.error(f"SCENARIOS names no section {', '.join(unknown)} (of {', '.join(SECTIONS)})")
    scale = SCALES[args.scale]
    options = Options(
        load=Load(args.concurrency, args.duration, args.requests, args.warmup),
        books_url=args.books_url.rstrip("/"),
        books_database_url=args.books_database_url or database_url(),
        min_books=args.min_books if args.min_books is not None else scale.books,
        seed=args.seed or scale.seeds,
        deep_offset=scale.deep_offset,
        random_seed=args.random_seed,
        orders_url=args.orders_url.rstrip("/"),
        orders_database_url=(
            args.orders_database_url or OrdersSettings.from_env().psycopg_database_url
        ),
        redis_url=args.redis_url,
        service_key=os.environ.get("SERVICE_KEY", "").strip() or None,
        api_key=admin_key_of_stack(),
        worker_jobs=args.worker_jobs,
        saga_rate=args.saga_rate,
        saga_duration_s=args.saga_duration,
        lending_rate=args.lending_rate,
        lending_duration_s=args.lending_duration,
        web_url=args.web_url.rstrip("/"),
        web_concurrency=args.web_concurrency,
    )
    for url in (options.books_url, options.orders_url, options.redis_url, options.web_url):
        if not is_loopback_url(url):
            parser.error(f"refusing to load a non-local target: {url}")
    for url in (options.books_database_url, options.orders_database_url):
        if not is_loopback_database(url):
            parser.error(f"refusing to load a non-local database: {describe(url)}")
    return options, args.only or chosen or list(SECTIONS)


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
