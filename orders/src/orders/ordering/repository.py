"""All SQL about orders."""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

from psycopg import sql
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from orders.ordering.models import Order, OrderItem, OrderStatus
from orders.ordering.reads import COLUMNS, ORDER_BY_ID, order_of
from orders.ordering.schemas import OrderRead
from orders.saga import RedrivePolicy
from servicekit.database import session_rows

# The order, then its lines in the order given (identity values follow the unnest's order),
# returned as `orders.ordering.reads` reads an order: one row per line.
_PLACE = text(
    f"""
    WITH o AS (
        INSERT INTO orders (status, customer_id, total_price)
        VALUES ('pending', :customer_id, :total_price)
        RETURNING id, status, rejection_reason, customer_id, total_price, created_at, updated_at
    ), i AS (
        INSERT INTO order_items
            (order_id, book_id, book_title, book_author, quantity, unit_price, total_price)
        SELECT o.id, line.book_id, line.title, line.author, line.quantity, line.unit_price,
            line.total
        FROM o, unnest(
            CAST(:book_ids AS bigint[]), CAST(:titles AS text[]), CAST(:authors AS text[]),
            CAST(:quantities AS integer[]), CAST(:unit_prices AS numeric[]),
            CAST(:totals AS numeric[])
        ) WITH ORDINALITY AS line (book_id, title, author, quantity, unit_price, total, n)
        ORDER BY line.n
        RETURNING *
    )
    SELECT {COLUMNS.as_string()} FROM o LEFT JOIN i ON i.order_id = o.id ORDER BY i.id
    """  # noqa: S608 - the columns are a constant of `orders.ordering.reads`
)


# The order moved to a status, if its status allows it, with its lines (as `_PLACE`
# returns them): the row the UPDATE wrote, so the answer is the order as it now is.
_CHANGE_STATUS = sql.SQL(
    """
    WITH o AS (
        UPDATE orders
        SET status = %(to)s, rejection_reason = %(rejection_reason)s, updated_at = now()
        WHERE id = %(order_id)s AND status = ANY (%(allowed_from)s)
        RETURNING id, status, rejection_reason, customer_id, total_price, created_at, updated_at
    )
    SELECT {columns} FROM o LEFT JOIN order_items AS i ON i.order_id = o.id ORDER BY i.id
    """
).format(columns=COLUMNS)


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, *, customer_id: int | None, total_price: Decimal, items: list[OrderItem]
    ) -> OrderRead:
        """The new pending order and its lines, written by one statement (one round trip;
        the ORM's flush took two, and a quarter of the CPU of placing an order)."""
        rows = await self.session.execute(
            _PLACE,
            {
                "customer_id": customer_id,
                "total_price": total_price,
                "book_ids": [item.book_id for item in items],
                "titles": [item.book_title for item in items],
                "authors": [item.book_author for item in items],
                "quantities": [item.quantity for item in items],
                "unit_prices": [item.unit_price for item in items],
                "totals": [item.total_price for item in items],
            },
        )
        return order_of([dict(row) for row in rows.mappings()])

    async def get(self, *, order_id: int) -> OrderRead | None:
        """The order as this transaction sees it now."""
        rows = await session_rows(self.session, ORDER_BY_ID, (order_id,))
        return order_of(rows) if rows else None

    async def stalled(self, *, policy: RedrivePolicy) -> list[Order]:
        """Pending orders due a re-drive, oldest first, locked: `SKIP LOCKED` lets two
        reconcilers share the work, and skips an order a worker is settling right now."""
        statement = (
            select(Order)
            .where(
                Order.status == OrderStatus.PENDING,
                *policy.due(
                    started_at=Order.created_at,
                    redrives=Order.redrives,
                    redriven_at=Order.redriven_at,
                ),
            )
            .order_by(Order.created_at, Order.id)
            .limit(policy.batch_size)
            .with_for_update(skip_locked=True, of=Order)
            .options(selectinload(Order.items))
        )
        return list((await self.session.scalars(statement)).all())

    async def stalled_releases(self, *, policy: RedrivePolicy) -> list[Order]:
        """Orders whose stock release no worker has reported done, due a re-drive; locked
        and skipped like `stalled`."""
        statement = (
            select(Order)
            .where(
                Order.releasing_since.is_not(None),
                *policy.due(
                    started_at=Order.releasing_since,
                    redrives=Order.redrives,
                    redriven_at=Order.redriven_at,
                ),
            )
            .order_by(Order.releasing_since, Order.id)
            .limit(policy.batch_size)
            .with_for_update(skip_locked=True, of=Order)
        )
        return list((await self.session.scalars(statement)).all())

    async def expect_release(self, *, order_id: int) -> None:
        """The order's stock release is announced: wait for a worker to report it done,
        counting re-drives afresh."""
        await self.session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(releasing_since=func.now(), redrives=0, redriven_at=None)
        )

    async def released(self, *, order_id: int) -> bool:
        """A worker reports the order's stock given back; False if no such order."""
        found = await self.session.scalar(
            update(Order)
            .where(Order.id == order_id)
            .values(releasing_since=None)
            .returning(Order.id)
        )
        return found is not None

    async def count_redrive(self, *, order_ids: Collection[int]) -> None:
        await self.session.execute(
            update(Order)
            .where(Order.id.in_(order_ids))
            .values(redrives=Order.redrives + 1, redriven_at=func.now())
        )

    async def change_status(
        self,
        *,
        order_id: int,
        to: OrderStatus,
        allowed_from: Collection[OrderStatus],
        rejection_reason: str | None = None,
    ) -> OrderRead | None:
        """Move the order to `to` if its status is one of `allowed_from`: the order moved,
        or None if it did not.

        One conditional UPDATE: of two racing changes, PostgreSQL lets the second see the
        first's result before deciding, so no check-then-write gap exists.
        """
        rows = await session_rows(
            self.session,
            _CHANGE_STATUS,
            {
                "order_id": order_id,
                "to": to.value,
                "rejection_reason": rejection_reason,
                "allowed_from": [status.value for status in allowed_from],
            },
        )
        return order_of(rows) if rows else None
