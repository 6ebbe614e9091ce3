"""The borrow reads of lending, in SQL on the read pool (see `servicekit.database.ReadPool`),
as `orders.ordering.reads`: a borrow, a page of borrows with its total, and a member's page
(the member's existence, the page and its total), each in one statement, built straight
into the response structs.

Through the session a member's history page paid a pre-ping, BEGIN, the member, the page,
the count and COMMIT, and built ORM objects on the way. The writes, and the reads that
decide a write, stay on the session.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from orders.lending.loans import LoanService
from orders.lending.models import BorrowStatus
from orders.lending.schemas import BorrowListStatus, BorrowRead, is_overdue, utc_or_none
from orders.ordering.schemas import money, utc
from servicekit.database import ReadPool, Row

COLUMNS = sql.SQL(
    "id, member_id, book_id, book_title, book_author, status, rejection_reason, hold_id,"
    " requested_at, borrowed_at, due_at, returned_at, lost_at, renewals, late_fee"
)
BORROW_BY_ID = sql.SQL("SELECT {} FROM borrows WHERE id = %s").format(COLUMNS)
NEWEST_FIRST = sql.SQL("ORDER BY requested_at DESC, id DESC")
# Longest overdue first, along the index of loans out by due date.
LONGEST_OVERDUE_FIRST = sql.SQL("ORDER BY due_at, id")
# A member's page, their total on every row; one row of nulls for a page past the end, and
# none for an unknown (or deleted) member.
MEMBER_PAGE = sql.SQL(
    "SELECT b.*, (SELECT count(*) FROM borrows WHERE member_id = m.id) AS total"
    " FROM members AS m LEFT JOIN LATERAL (SELECT {columns} FROM borrows"
    " WHERE member_id = m.id {order} LIMIT %s OFFSET %s) AS b ON true"
    " WHERE m.id = %s AND m.deleted_at IS NULL ORDER BY b.requested_at DESC, b.id DESC"
).format(columns=COLUMNS, order=NEWEST_FIRST)


def _filters(
    *, status: BorrowListStatus | None, member_id: int | None, book_id: int | None
) -> tuple[sql.SQL, list[object]]:
    conditions, params = ["true"], list[object]()
    if status is BorrowListStatus.OVERDUE:
        conditions += ["status = %s", "due_at < now()"]
        params.append(BorrowStatus.ACTIVE.value)
    elif status is not None:
        conditions.append("status = %s")
        params.append(status.value)
    if member_id is not None:
        conditions.append("member_id = %s")
        params.append(member_id)
    if book_id is not None:
        conditions.append("book_id = %s")
        params.append(book_id)
    return sql.SQL(" AND ".join(conditions)), params


def count_statement(
    *, status: BorrowListStatus | None, member_id: int | None, book_id: int | None
) -> tuple[sql.Composed, list[object]]:
    where, params = _filters(status=status, member_id=member_id, book_id=book_id)
    return sql.SQL("SELECT count(*) FROM borrows WHERE {}").format(where), params


def page_statement(
    *,
    limit: int,
    offset: int,
    status: BorrowListStatus | None,
    member_id: int | None,
    book_id: int | None,
) -> tuple[sql.Composed, list[object]]:
    """The page's borrows, and the total of the query on every row."""
    where, params = _filters(status=status, member_id=member_id, book_id=book_id)
    count, count_params = count_statement(status=status, member_id=member_id, book_id=book_id)
    order = LONGEST_OVERDUE_FIRST if status is BorrowListStatus.OVERDUE else NEWEST_FIRST
    statement = sql.SQL(
        "SELECT {columns}, ({count}) AS total FROM borrows WHERE {where} {order} LIMIT %s OFFSET %s"
    ).format(columns=COLUMNS, count=count, where=where, order=order)
    return statement, [*count_params, *params, limit, offset]


def borrow_of(row: Row, *, now: datetime) -> BorrowRead:
    """The borrow a row describes, `overdue` judged at `now` as `BorrowRead.of` judges it."""
    status = BorrowStatus(row["status"])
    due_at, late_fee = row["due_at"], row["late_fee"]
    return BorrowRead(
        id=row["id"],
        member_id=row["member_id"],
        book_id=row["book_id"],
        book_title=row["book_title"],
        book_author=row["book_author"],
        status=status,
        overdue=is_overdue(status, due_at, now=now),
        rejection_reason=row["rejection_reason"],
        hold_id=row["hold_id"],
        requested_at=utc(row["requested_at"]),
        borrowed_at=utc_or_none(row["borrowed_at"]),
        due_at=utc_or_none(due_at),
        returned_at=utc_or_none(row["returned_at"]),
        lost_at=utc_or_none(row["lost_at"]),
        renewals=row["renewals"],
        late_fee=None if late_fee is None else money(late_fee),
    )


class BorrowReads:
    def __init__(self, pool: ReadPool) -> None:
        self.pool = pool

    async def borrow(self, *, borrow_id: int) -> BorrowRead | None:
        rows = await self.pool.rows(BORROW_BY_ID, (borrow_id,))
        return borrow_of(rows[0], now=LoanService.now()) if rows else None

    async def page(
        self,
        *,
        limit: int,
        offset: int,
        status: BorrowListStatus | None,
        member_id: int | None,
        book_id: int | None,
    ) -> tuple[list[BorrowRead], int]:
        """A page and the total of its query in one statement."""
        rows, total = await self.pool.page(
            page_statement(
                limit=limit, offset=offset, status=status, member_id=member_id, book_id=book_id
            ),
            count_statement(status=status, member_id=member_id, book_id=book_id),
        )
        now = LoanService.now()
        return [borrow_of(row, now=now) for row in rows], total

    async def member_page(
        self, *, member_id: int, limit: int, offset: int
    ) -> tuple[list[BorrowRead], int] | None:
        """A member's borrows, newest first, and how many they have; None for an unknown
        member. One statement, past the end too."""

        rows = await self.pool.rows(MEMBER_PAGE, (limit, offset, member_id))
        if not rows:
            return None
        now = LoanService.now()
        borrows = [borrow_of(row, now=now) for row in rows if row["id"] is not None]
        return borrows, int(rows[0]["total"])
