"""The hot reads of orders, in SQL on the read pool (see `servicekit.database.ReadPool`): an
order with its lines, and a page of orders with its total, each in one statement, built
straight into the response structs.

Through the session the same `GET /v1/orders/{id}` paid a pre-ping, BEGIN, the order, its
lines (a second statement, `selectinload`) and COMMIT, and built ORM objects on the way.
The writes, and the reads that decide a write, stay on the session.
"""

from __future__ import annotations

from itertools import groupby

from psycopg import sql

from orders.ordering.models import OrderStatus
from orders.ordering.schemas import OrderItemRead, OrderRead, money, utc
from servicekit.database import ReadPool, Row

# An order's columns, then its line's (null for an order without lines), one row per line.
COLUMNS = sql.SQL(
    "o.id, o.status, o.rejection_reason, o.customer_id, o.total_price, o.created_at,"
    " o.updated_at, i.id AS item_id, i.book_id, i.book_title, i.book_author, i.quantity,"
    " i.unit_price, i.total_price AS item_total_price, i.created_at AS item_created_at"
)
ORDER_BY_ID = sql.SQL(
    "SELECT {} FROM orders AS o LEFT JOIN order_items AS i ON i.order_id = o.id"
    " WHERE o.id = %s ORDER BY i.id"
).format(COLUMNS)
NEWEST_FIRST = sql.SQL("ORDER BY o.created_at DESC, o.id DESC")
# All orders, or those of a status: the counters kept by triggers (migration 0006).
COUNTED = sql.SQL("SELECT coalesce(sum(orders), 0) FROM order_counts")
COUNTED_OF_STATUS = sql.SQL("SELECT coalesce(sum(orders), 0) FROM order_counts WHERE status = %s")


def _filters(
    *, status: OrderStatus | None, customer_id: int | None
) -> tuple[sql.SQL, list[object]]:
    conditions, params = ["true"], list[object]()
    if status is not None:
        conditions.append("status = %s")
        params.append(status.value)
    if customer_id is not None:
        conditions.append("customer_id = %s")
        params.append(customer_id)
    return sql.SQL(" AND ".join(conditions)), params


def count_statement(
    *, status: OrderStatus | None, customer_id: int | None
) -> tuple[sql.SQL | sql.Composed, list[object]]:
    """A customer's orders are counted (their index bounds the work); all orders, or those
    of a status, are summed from the counters."""
    if customer_id is None:
        return (COUNTED, []) if status is None else (COUNTED_OF_STATUS, [status.value])
    where, params = _filters(status=status, customer_id=customer_id)
    return sql.SQL("SELECT count(*) FROM orders WHERE {}").format(where), params


def page_statement(
    *, limit: int, offset: int, status: OrderStatus | None, customer_id: int | None
) -> tuple[sql.SQL | sql.Composed, list[object]]:
    """The page's orders with their lines, and the total of the query on every row."""
    where, params = _filters(status=status, customer_id=customer_id)
    count, count_params = count_statement(status=status, customer_id=customer_id)
    statement = sql.SQL(
        "SELECT {columns}, ({count}) AS total FROM (SELECT * FROM orders WHERE {where}"
        " ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s) AS o"
        " LEFT JOIN order_items AS i ON i.order_id = o.id {order}, i.id"
    ).format(columns=COLUMNS, count=count, where=where, order=NEWEST_FIRST)
    return statement, [*count_params, *params, limit, offset]


def order_of(rows: list[Row]) -> OrderRead:
    """The order that `rows` (its lines, in order) describe."""
    order = rows[0]
    return OrderRead(
        id=order["id"],
        status=OrderStatus(order["status"]),
        rejection_reason=order["rejection_reason"],
        customer_id=order["customer_id"],
        total_price=money(order["total_price"]),
        items=[
            OrderItemRead(
                id=row["item_id"],
                order_id=order["id"],
                book_id=row["book_id"],
                book_title=row["book_title"],
                book_author=row["book_author"],
                quantity=row["quantity"],
                unit_price=money(row["unit_price"]),
                total_price=money(row["item_total_price"]),
                created_at=utc(row["item_created_at"]),
            )
            for row in rows
            if row["item_id"] is not None
        ],
        created_at=utc(order["created_at"]),
        updated_at=utc(order["updated_at"]),
    )


class OrderReads:
    def __init__(self, pool: ReadPool) -> None:
        self.pool = pool

    async def order(self, *, order_id: int) -> OrderRead | None:
        rows = await self.pool.rows(ORDER_BY_ID, (order_id,))
        return order_of(rows) if rows else None

    async def page(
        self, *, limit: int, offset: int, status: OrderStatus | None, customer_id: int | None
    ) -> tuple[list[OrderRead], int]:
        """A page with its lines and the total of its query in one statement."""
        rows, total = await self.pool.page(
            page_statement(limit=limit, offset=offset, status=status, customer_id=customer_id),
            count_statement(status=status, customer_id=customer_id),
        )
        orders = [order_of(list(lines)) for _, lines in groupby(rows, key=lambda row: row["id"])]
        return orders, total
