"""The raw baselines of the lending section: the statements orders (and, for a borrow,
books) run for each request, on pooled psycopg connections. The borrow reads are the API's
own (`orders.lending.reads`); the rest are written out as SQLAlchemy compiles them for
psycopg (`orders.lending.repository`, `orders.lending.library`, `books.catalog.repository`,
`books.lending.repository`)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.sql import Composed
from sqlalchemy import TextClause

from devstack.bench.raw import Query
from orders.lending.library import POPULAR_SQL as POPULAR
from orders.lending.library import SUMMARY_SQL as SUMMARY
from orders.lending.library import TOP_MEMBERS_SQL as TOP_MEMBERS
from orders.lending.reads import MEMBER_PAGE, count_statement, page_statement
from orders.lending.schemas import BorrowListStatus

BORROW_COLUMNS = (
    "id, member_id, book_id, book_title, book_author, status, rejection_reason, hold_id,"
    " requested_at, borrowed_at, due_at, returned_at, renewals, late_fee, updated_at"
)
MEMBER_SQL = (
    "SELECT id, name, email, status, max_loans, loans_out, created_at, updated_at, deleted_at"
    " FROM members WHERE id = %s AND deleted_at IS NULL"
)
# BooksClient.active_books: `GET /v1/books?ids=ID&limit=1` at books, a page and its count.
BOOK_PAGE_SQL = (
    "SELECT books.id, title, author, description, price, active, image, stock, copies_total,"
    " copies_available, created_at, updated_at FROM books JOIN (SELECT id FROM books"
    " WHERE active AND id IN (%s) ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET 0) AS page"
    " ON books.id = page.id ORDER BY created_at DESC, id DESC"
)
BOOK_COUNT_SQL = "SELECT count(*) FROM books WHERE active AND id IN (%s)"
TAKE_LOAN_SLOT_SQL = (
    "UPDATE members SET loans_out = loans_out + 1 WHERE id = %s AND deleted_at IS NULL"
    " AND status = 'active' AND loans_out < max_loans RETURNING id"
)
INSERT_BORROW_SQL = (
    "INSERT INTO borrows (member_id, book_id, book_title, book_author, status)"  # noqa: S608 - our own column list
    " VALUES (%s, %s, %s, %s, 'pending') ON CONFLICT (member_id, book_id)"
    f" WHERE status IN ('pending', 'active') DO NOTHING RETURNING {BORROW_COLUMNS}"
)
INSERT_EVENT_SQL = "INSERT INTO outbox (topic, payload, request_id) VALUES (%s, %s, NULL)"
# The checkout at books (one savepoint there: claim the reference, take a copy) and the
# activation at orders, as the worker's two calls run them.
CLAIM_COPY_SQL = (
    "INSERT INTO copy_loans (reference, book_id, state) SELECT %s, %s, 'out'"
    " WHERE EXISTS (SELECT 1 FROM books WHERE id = %s)"
    " ON CONFLICT (reference) DO NOTHING RETURNING reference"
)
TAKE_COPY_SQL = (
    "UPDATE books SET copies_available = copies_available - 1, updated_at = now()"
    " WHERE id = %s AND active AND copies_available > 0 RETURNING id"
)
ACTIVATE_SQL = (
    "UPDATE borrows SET status = 'active', borrowed_at = now(), due_at = now() + %s,"  # noqa: S608 - our own column list
    " updated_at = now() WHERE id = %s AND status IN ('pending')"
    f" RETURNING {BORROW_COLUMNS}"
)
# The count of overdue loans the API runs for a page past the end (`orders.lending.reads`).
OVERDUE_COUNT = count_statement(status=BorrowListStatus.OVERDUE, member_id=None, book_id=None)


def _psycopg(statement: TextClause) -> str:
    """One of the library's statements with psycopg's placeholders for SQLAlchemy's."""
    return re.sub(r"(?<!:):(\w+)", r"%(\1)s", statement.text)


SUMMARY_SQL = _psycopg(SUMMARY)
POPULAR_SQL = _psycopg(POPULAR)
TOP_MEMBERS_SQL = _psycopg(TOP_MEMBERS)
FIGURE_LIMIT = 10
OVERDUE_LIMIT = 50
LOAN_PERIOD = timedelta(days=14)

Connection = psycopg.AsyncConnection[Any]


async def one(conn: Connection, sql: str | Composed, params: Sequence[Any] | dict[str, Any]) -> Any:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchone()


async def page(conn: Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> None:
    cursor = await conn.execute(sql, params)
    await cursor.fetchall()


async def request_borrow(
    books: Connection, orders: Connection, *, member_id: int, book_id: int, event: bool
) -> tuple[Any, ...]:
    """What `POST /v1/borrows` runs: the member, the book at books, the loan slot, the
    borrow and (with `event`) its outbox row; committed when the connections go back."""
    if await one(orders, MEMBER_SQL, (member_id,)) is None:
        raise LookupError(f"member {member_id} not found")
    book = await one(books, BOOK_PAGE_SQL, (book_id,))
    await one(books, BOOK_COUNT_SQL, (book_id,))
    await books.commit()
    if book is None or not book[8]:
        raise LookupError(f"book {book_id} is not lendable")
    if await one(orders, TAKE_LOAN_SLOT_SQL, (member_id,)) is None:
        raise LookupError(f"member {member_id} has no free loan slot")
    borrow = await one(orders, INSERT_BORROW_SQL, (member_id, book_id, book[1], book[2]))
    if borrow is None:
        raise LookupError(f"member {member_id} already has book {book_id}")
    if event:
        payload = json.dumps({"borrow_id": borrow[0], "book_id": book_id})
        await orders.execute(INSERT_EVENT_SQL, ("borrow.requested", payload))
    await orders.commit()
    return tuple(borrow)


async def check_out_and_activate(
    books: Connection, orders: Connection, *, borrow_id: int, book_id: int
) -> tuple[datetime, datetime]:
    """The worker's checkout at books and activation at orders, without the relay, the queue
    and the two HTTP calls; the loan's requested_at and borrowed_at."""
    reference = f"borrow:{borrow_id}"
    claimed = await one(books, CLAIM_COPY_SQL, (reference, book_id, book_id))
    taken = claimed and await one(books, TAKE_COPY_SQL, (book_id,))
    if not taken:
        await books.rollback()
        raise LookupError(f"no copy of book {book_id} on the shelf")
    await books.commit()
    borrow = await one(orders, ACTIVATE_SQL, (LOAN_PERIOD, borrow_id))
    await orders.commit()
    if borrow is None:
        raise LookupError(f"borrow {borrow_id} was no longer pending")
    return borrow[8], borrow[9]


def history_page(members: Sequence[int], rng: random.Random, limit: int) -> Query:
    async def select_history(conn: Connection) -> None:
        member_id = rng.choice(members)
        cursor = await conn.execute(MEMBER_PAGE, (limit, 0, member_id))
        if not await cursor.fetchall():
            raise LookupError(f"member {member_id} not found")

    return select_history


def overdue_page(offset: int, limit: int = OVERDUE_LIMIT) -> Query:
    statement, params = page_statement(
        limit=limit, offset=offset, status=BorrowListStatus.OVERDUE, member_id=None, book_id=None
    )
    count, count_params = OVERDUE_COUNT

    async def select_overdue(conn: Connection) -> None:
        cursor = await conn.execute(statement, params)
        if not await cursor.fetchall():
            await one(conn, count, count_params)

    return select_overdue


def figure(sql: str, params: Callable[[], dict[str, Any]] | None = None) -> Query:
    async def select_figure(conn: Connection) -> None:
        await page(conn, sql, params() if params else ())

    return select_figure


def window(days: int) -> Callable[[], dict[str, Any]]:
    return lambda: {"window": timedelta(days=days), "limit": FIGURE_LIMIT}
