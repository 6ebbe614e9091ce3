"""The saga section: a steady open-loop order rate against the stack's relay and workers,
and how long each order took from its commit to `confirmed`."""

from __future__ import annotations

import random
import sys
import time

import httpx
import psycopg

from devstack.bench.cpu import cpu_meter
from devstack.bench.load import REQUEST_TIMEOUT_S, expect, open_loop, summarize
from devstack.bench.ordering import (
    ORDER_ITEMS,
    Settled,
    order_body,
    settle,
    settled_note,
    status_counts,
    untracked_books,
)
from devstack.bench.report import Report
from devstack.bench.stack import Options, key_headers, require_orders_database, require_service


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

    # From the first order to the last one settled: everything the orders cost the stack.
    with cpu_meter() as cpu:
        async with httpx.AsyncClient(
            base_url=options.orders_url, timeout=REQUEST_TIMEOUT_S, headers=key_headers(options)
        ) as client:

            async def place(due: float) -> None:
                try:
                    response = await client.post("/v1/orders", json=order_body(rng, books))
                    expect(response, 201)
                except Exception as error:  # every failure is a data point, not a crash
                    errors.append(str(error) or type(error).__name__)
                    return
                latencies_ms.append((time.perf_counter() - due) * 1000)
                ids.append(int(response.json()["id"]))

            print(f"  {total} orders at {rate:g}/s ...", file=sys.stderr, flush=True)
            seconds = await open_loop(rate, total, place)

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
    report.notes += cpu.notes(len(ids), "order")
    report.notes.append(
        "commit -> confirmed: the order's created_at (now() of the placing transaction, just "
        "before its commit) to the updated_at the confirming UPDATE sets, both from "
        "PostgreSQL's clock; includes the relay's poll (every 0.1 s when idle), the queue, the "
        "reservation at books and the confirmation at orders"
    )
    return report
