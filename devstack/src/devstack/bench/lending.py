"""The lending section: borrow requests, member histories, the overdue list and the
library's figures through the orders API, each next to a raw psycopg run of the same SQL
at the same concurrency; then request -> active at a fixed rate (`lending_activation`).

Borrows go to random active members with a free loan slot (each slot used once) and
random books with a copy on the shelf, so every request is admitted (201); they are real
loans: the stack's relay and workers check copies out for them, and the section waits for
that before it moves on. Run it on `make seed SCENARIO=high_scale` data.
"""

from __future__ import annotations

import random
import sys

from books.config import get_settings as books_settings
from books.seed import describe
from devstack.bench import lending_sql as sql
from devstack.bench.lending_activation import run_activation
from devstack.bench.lending_data import LoanSlots, books_on_the_shelf, heavy_members, loan_slots
from devstack.bench.load import Call, Load, Summary, expect, scenario, user_clients
from devstack.bench.ordering import settle, settled_note
from devstack.bench.raw import Baseline, Query, api_and_raw, api_pool_size, raw_pool
from devstack.bench.report import Report, ratio_note
from devstack.bench.stack import (
    Options,
    fetch_value,
    key_headers,
    require_orders_database,
    require_service,
)
from orders.config import Settings as OrdersSettings

HISTORY_LIMIT = 20
OVERDUE_LIMIT = sql.OVERDUE_LIMIT
DEEP_OVERDUE_OFFSET = 5_000
FIGURE_DAYS = 30


async def run_lending(options: Options) -> Report:
    report = Report("lending")
    load = options.load
    url = options.orders_database_url
    await require_service("orders", options.orders_url)
    await require_orders_database(url)
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets
    print("  sampling members, books and histories ...", file=sys.stderr, flush=True)
    slots = await loan_slots(options, rng)
    heavy = await heavy_members(url)
    borrows = int(await fetch_value(url, "SELECT count(*) FROM borrows") or 0)
    overdue = int(await fetch_value(url, *sql.OVERDUE_COUNT) or 0)
    deep = max(0, min(DEEP_OVERDUE_OFFSET, overdue - OVERDUE_LIMIT))
    members = int(await fetch_value(url, "SELECT count(*) FROM members") or 0)
    report.heading = (
        f"lending: {members:,} members, {borrows:,} borrows ({overdue:,} overdue); API "
        f"{options.orders_url}, database {describe(url)}; {load.describe()}"
    )
    orders = Baseline(url, api_pool_size(OrdersSettings.from_env()))
    books = Baseline(options.books_database_url, api_pool_size(books_settings()))
    figures: list[tuple[str, dict[str, int | str], str, Query]] = [
        ("/v1/library/summary", {}, "summary", sql.figure(sql.SUMMARY_SQL)),
        (
            "/v1/library/popular",
            {"days": FIGURE_DAYS},
            "popular books",
            sql.figure(sql.POPULAR_SQL, sql.window(FIGURE_DAYS)),
        ),
        (
            "/v1/library/members/top",
            {"days": FIGURE_DAYS},
            "top members",
            sql.figure(sql.TOP_MEMBERS_SQL, sql.window(FIGURE_DAYS)),
        ),
    ]

    async with user_clients(options.orders_url, load.concurrency, key_headers(options)) as clients:

        def get(path: str, params: dict[str, int | str]) -> Call:
            async def call(user: int) -> None:
                expect(await clients[user].get(path, params=params), 200)

            return call

        async def history(user: int) -> None:
            path = f"/v1/members/{rng.choice(heavy)}/borrows"
            expect(await clients[user].get(path, params={"limit": HISTORY_LIMIT}), 200)

        async def borrow(user: int) -> None:
            member_id, book_id = slots.take()
            body = {"member_id": member_id, "book_id": book_id}
            expect(await clients[user].post("/v1/borrows", json=body), 201)

        if heavy:
            pair = await api_and_raw(
                report.summaries,
                load,
                (f"GET /v1/members/{{id}}/borrows?limit={HISTORY_LIMIT}", history),
                ("raw psycopg member history page", sql.history_page(heavy, rng, HISTORY_LIMIT)),
                orders,
            )
            report.notes.append(ratio_note(*pair, what="a member's history"))
        for offset in sorted({0, deep}):
            params: dict[str, int | str] = {"status": "overdue", "limit": OVERDUE_LIMIT}
            shown = f"status=overdue&limit={OVERDUE_LIMIT}"
            if offset:
                params["offset"] = offset
                shown += f"&offset={offset}"
            pair = await api_and_raw(
                report.summaries,
                load,
                (f"GET /v1/borrows?{shown}", get("/v1/borrows", params)),
                (f"raw psycopg overdue page, offset {offset:,}", sql.overdue_page(offset)),
                orders,
            )
            report.notes.append(ratio_note(*pair, what=f"overdue page at offset {offset:,}"))
        for path, params, what, query_figure in figures:
            shown = "&".join(f"{name}={value}" for name, value in params.items())
            pair = await api_and_raw(
                report.summaries,
                load,
                (f"GET {path}" + (f"?{shown}" if shown else ""), get(path, params)),
                (f"raw psycopg {what}", query_figure),
                orders,
            )
            report.notes.append(ratio_note(*pair, what=what))

        before = int(await fetch_value(url, "SELECT coalesce(max(id), 0) FROM borrows") or 0)
        api = await scenario("POST /v1/borrows", borrow, load)
        report.summaries.append(api)
        raw = await raw_borrows(slots, load, books, orders)
        report.summaries.append(raw)
        report.notes.append(ratio_note(api, raw, what="a borrow request"))

    after = int(await fetch_value(url, "SELECT coalesce(max(id), 0) FROM borrows") or 0)
    print("  waiting for the workers to check the copies out ...", file=sys.stderr, flush=True)
    settled = await settle(url, after_id=before, table="borrows")
    report.notes.append(settled_note("after POST", after - before, settled, "borrows"))
    report.notes.append(
        f"raw baselines: the statements orders runs for each request (a borrow also runs "
        f"books' batch lookup at books) through psycopg pools of the APIs' sizes "
        f"({orders.pool_size} orders, {books.pool_size} books), same users; member history: "
        f"the {len(heavy):,} members with the most borrows; overdue deep page at offset {deep:,}"
    )
    slots.books = await books_on_the_shelf(options.books_database_url)
    await run_activation(options, report, slots, books=books, orders=orders)
    return report


async def raw_borrows(slots: LoanSlots, load: Load, books: Baseline, orders: Baseline) -> Summary:
    """The raw borrow: both pools, committed with its outbox row as the API does."""
    async with (
        raw_pool(books.url, books.pool_size) as books_pool,
        raw_pool(orders.url, orders.pool_size) as orders_pool,
    ):

        async def borrow(user: int) -> None:
            member_id, book_id = slots.take()
            async with books_pool.connection() as books_conn, orders_pool.connection() as conn:
                await sql.request_borrow(
                    books_conn, conn, member_id=member_id, book_id=book_id, event=True
                )

        return await scenario("raw psycopg borrow (the same 7 statements)", borrow, load)
