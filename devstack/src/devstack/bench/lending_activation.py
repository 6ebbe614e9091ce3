"""Request -> active: borrows placed at a fixed rate (open loop) through the API with the
stack's relay and workers running, and the same chain of statements run straight on the
two databases at the same rate, the floor under the relay, the queue and the HTTP calls.

Both read `borrowed_at - requested_at` of each loan, from PostgreSQL's clock: the
borrow's transaction start to the activating UPDATE's.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import datetime

import httpx

from devstack.bench import lending_sql as sql
from devstack.bench.lending_data import LoanSlots, books_on_the_shelf
from devstack.bench.load import REQUEST_TIMEOUT_S, Summary, expect, open_loop, summarize
from devstack.bench.ordering import Settled, settle, settled_note
from devstack.bench.raw import Baseline, raw_pool
from devstack.bench.report import Report, first_line
from devstack.bench.stack import Options, key_headers


def waited_ms(requested_at: datetime, borrowed_at: datetime) -> float:
    return (borrowed_at - requested_at).total_seconds() * 1000


async def run_activation(
    options: Options, report: Report, slots: LoanSlots, *, books: Baseline, orders: Baseline
) -> None:
    rate, duration = options.lending_rate, options.lending_duration_s
    total = max(1, round(rate * duration))
    ids: list[int] = []
    posted_ms: list[float] = []
    errors: list[str] = []

    async with httpx.AsyncClient(
        base_url=options.orders_url, timeout=REQUEST_TIMEOUT_S, headers=key_headers(options)
    ) as client:

        async def place(due: float) -> None:
            member_id, book_id = slots.take()
            try:
                body = {"member_id": member_id, "book_id": book_id}
                response = await client.post("/v1/borrows", json=body)
                expect(response, 201)
            except Exception as error:  # every failure is a data point, not a crash
                errors.append(first_line(error))
                return
            posted_ms.append((time.perf_counter() - due) * 1000)
            ids.append(int(response.json()["id"]))

        print(f"  {total} borrows at {rate:g}/s, then their activation ...", file=sys.stderr)
        seconds = await open_loop(rate, total, place)
        after_id = min(ids) - 1 if ids else 0
        settled = await settle(orders.url, after_id=after_id, table="borrows") if ids else None
        statuses: Counter[str] = Counter()
        active_ms: list[float] = []
        for borrow_id in ids:
            response = await client.get(f"/v1/borrows/{borrow_id}")
            expect(response, 200)
            borrow = response.json()
            statuses[borrow["status"]] += 1
            if borrow["borrowed_at"]:
                active_ms.append(
                    waited_ms(
                        datetime.fromisoformat(borrow["requested_at"]),
                        datetime.fromisoformat(borrow["borrowed_at"]),
                    )
                )

    posted = summarize(
        f"POST /v1/borrows at {rate:g}/s",
        posted_ms,
        errors=len(errors),
        seconds=seconds,
        first_error=errors[0] if errors else None,
    )
    outcome = ", ".join(f"{count:,} {status}" for status, count in sorted(statuses.items()))
    api = summarize(
        "request -> active (API, relay, queue, worker)",
        active_ms,
        errors=len(ids) - len(active_ms),
        seconds=seconds,
        first_error=None if len(active_ms) == len(ids) else f"not all active: {outcome}",
    )
    slots.books = await books_on_the_shelf(books.url)
    raw = await raw_activation(slots, rate, total, books=books, orders=orders)
    report.summaries += [posted, api, raw]
    report.notes.append(f"request -> active: the {len(ids):,} borrows ended {outcome}")
    report.notes.append(
        settled_note("request -> active", len(ids), settled or Settled(0.0, 0), "borrows")
    )
    if api.p50_ms and raw.p50_ms and api.p95_ms and raw.p95_ms:
        report.notes.append(
            f"request -> active, API/raw: p50 {api.p50_ms / raw.p50_ms:.1f}x, "
            f"p95 {api.p95_ms / raw.p95_ms:.1f}x"
        )
    report.notes.append(
        "request -> active: borrowed_at - requested_at of each loan (PostgreSQL's clock); "
        "through the API it includes the relay's poll, the queue, the worker's checkout at "
        "books and activation at orders over HTTP; the raw chain runs the same statements "
        "(borrow, checkout, activation) straight after one another, without an outbox row"
    )


async def raw_activation(
    slots: LoanSlots, rate: float, total: int, *, books: Baseline, orders: Baseline
) -> Summary:
    waits_ms: list[float] = []
    errors: list[str] = []
    async with (
        raw_pool(books.url, books.pool_size) as books_pool,
        raw_pool(orders.url, orders.pool_size) as orders_pool,
    ):

        async def chain(_due: float) -> None:
            member_id, book_id = slots.take()
            try:
                async with books_pool.connection() as books_conn, orders_pool.connection() as conn:
                    borrow = await sql.request_borrow(
                        books_conn, conn, member_id=member_id, book_id=book_id, event=False
                    )
                    times = await sql.check_out_and_activate(
                        books_conn, conn, borrow_id=borrow[0], book_id=book_id
                    )
            except Exception as error:  # every failure is a data point, not a crash
                errors.append(first_line(error))
                return
            waits_ms.append(waited_ms(*times))

        print(f"  raw chain: {total} borrows at {rate:g}/s ...", file=sys.stderr, flush=True)
        seconds = await open_loop(rate, total, chain)
    return summarize(
        f"raw psycopg borrow + checkout + activate at {rate:g}/s",
        waits_ms,
        errors=len(errors),
        seconds=seconds,
        first_error=errors[0] if errors else None,
    )
