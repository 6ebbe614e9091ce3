"""The workers section: jobs/s of the worker setup `python -m workers.worker` runs, for a
no-op job and for the reservation job, next to RQ's hello world, all from `workers.bench`
in this run. They run on their own Redis database and queues with workers started for the
occasion, so the stack's own workers never see these jobs.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import redis

import workers.bench as worker_bench
from devstack.bench.cpu import cpu_meter
from devstack.bench.load import Summary
from devstack.bench.ordering import (
    ORDER_ITEMS,
    Book,
    status_counts,
    untracked_books,
)
from devstack.bench.report import Report, first_line
from devstack.bench.stack import (
    Options,
    SkipSection,
    redis_database,
    require_orders_database,
    require_redis,
    require_service,
    service_key,
)
from devstack.run import without_password

WORKER_BENCH_REDIS_DB = 1
WORKER_PROCESSES = 2


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
    notes: list[str] | None = None,
    **job: Any,
) -> Summary:
    """One `workers.bench.measure` as a table row: jobs, failures, jobs/s once running (its
    seconds are what all the jobs take at that rate); its start-up goes to `notes`."""
    print(f"  {name} ...", file=sys.stderr, flush=True)
    if timeout_s is None:
        # Start-up, then at least 2 jobs/s: a setup slower than that has failed anyway.
        timeout_s = 60 + jobs / 2
    started = time.perf_counter()
    try:
        with cpu_meter() as cpu:
            row = worker_bench.measure(setup, redis_url, jobs=jobs, timeout_s=timeout_s, **job)
    except (RuntimeError, TimeoutError, redis.RedisError) as error:
        return Summary(
            name, jobs, jobs, time.perf_counter() - started, None, None, None, first_line(error)
        )
    seconds = row.jobs / row.jobs_per_s if row.jobs_per_s else row.seconds
    if notes is not None:
        notes.append(f"{name}: {row.startup_s:.2f} s from its start to its first job finished")
    return Summary(name, row.jobs, 0, seconds, None, None, None, cpu_ms=cpu.ms_per(row.jobs))


async def run_workers(options: Options) -> Report:
    report = Report("workers", rate="jobs/s")
    redis_url = redis_database(options.redis_url, WORKER_BENCH_REDIS_DB)
    require_redis(redis_url)
    jobs = options.worker_jobs
    report.heading = (
        f"workers: {jobs:,} jobs per row on {without_password(redis_url)} (its own queues, "
        "not the stack's), "
        "jobs/s from the first job finished to the last (start-up apart, in the notes)"
    )
    chosen = worker_bench.chosen_setup(WORKER_PROCESSES)
    chosen_name = f"{chosen.name} ({chosen.processes} processes)"
    # Synchronous on purpose: forking the worker processes from the loop's own thread.
    baseline = worker_row(
        "rq hello world (Worker, pickle, 1 process)",
        worker_bench.hello_world_setup(),
        redis_url,
        jobs,
        notes=report.notes,
    )
    noop = worker_row(f"{chosen_name}: no-op job", chosen, redis_url, jobs, notes=report.notes)
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
    with environment(worker_env), cpu_meter() as cpu:
        row = worker_row(
            name,
            setup,
            redis_url,
            len(ids),
            notes=report.notes,
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
    report.notes += cpu.notes(row.requests - row.errors, "place_order job")
    return row


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
