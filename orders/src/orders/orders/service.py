"""Order rules: what may be placed, how it is priced, and what a retry gets back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from orders import idempotency
from orders.books_client import BooksClient, BookSnapshot
from orders.errors import (
    BooksContractBroken,
    BooksUnavailable,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    OrderNotFound,
    UnknownBooks,
)
from orders.idempotency import Claimed, IdempotencyStore, InFlight, Mismatch, Replay, StoredResponse
from orders.metrics import ORDERS_CREATED
from orders.orders.models import Order, OrderItem, OrderStatus
from orders.orders.repository import OrderRepository
from orders.orders.schemas import OrderCreate, OrderItemCreate, OrderRead, money
from servicekit.outbox import add_event

ORDERS_PATH = "/v1/orders"
ORDER_PLACED = "order.placed"


@dataclass(frozen=True)
class PlacedOrder:
    response: StoredResponse
    replayed: bool


def price_lines(
    items: Sequence[OrderItemCreate], books: Mapping[int, BookSnapshot]
) -> tuple[list[OrderItem], Decimal]:
    """Order lines snapshotting each book, and the order total: exact decimal arithmetic."""
    lines = [
        OrderItem(
            book_id=item.book_id,
            book_title=books[item.book_id].title,
            book_author=books[item.book_id].author,
            quantity=item.quantity,
            unit_price=books[item.book_id].price,
            total_price=books[item.book_id].price * item.quantity,
        )
        for item in items
    ]
    return lines, sum((line.total_price for line in lines), Decimal("0.00"))


class OrderService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        books: BooksClient,
        idempotency_store: IdempotencyStore | None,
    ) -> None:
        self.session = session
        self.orders = OrderRepository(session)
        self.books = books
        self.idempotency_store = idempotency_store

    async def place_order(self, *, data: OrderCreate, idempotency_key: str | None) -> PlacedOrder:
        """Place an order once: a retry with the same key gets the first answer back."""
        if idempotency_key is None or self.idempotency_store is None:
            return PlacedOrder(await self._place(data=data, claim=None), replayed=False)
        request_fingerprint = idempotency.fingerprint(
            b"POST", ORDERS_PATH.encode(), msgspec.json.encode(data)
        )
        outcome = await self.idempotency_store.claim(
            key=idempotency_key, fingerprint=request_fingerprint
        )
        if isinstance(outcome, Replay):
            ORDERS_CREATED.labels("replayed").inc()
            return PlacedOrder(outcome.response, replayed=True)
        if isinstance(outcome, Mismatch):
            ORDERS_CREATED.labels("idempotency_key_reused").inc()
            raise IdempotencyKeyReused()
        if isinstance(outcome, InFlight):
            ORDERS_CREATED.labels("idempotency_key_in_flight").inc()
            raise IdempotencyKeyInFlight()
        try:
            return PlacedOrder(await self._place(data=data, claim=outcome), replayed=False)
        except BaseException:
            await self.idempotency_store.release(outcome)
            raise

    async def _place(self, *, data: OrderCreate, claim: Claimed | None) -> StoredResponse:
        try:
            books = await self.books.active_books(book_ids=data.book_ids)
        except BooksUnavailable:
            ORDERS_CREATED.labels("books_unavailable").inc()
            raise
        except BooksContractBroken:
            ORDERS_CREATED.labels("books_bad_answer").inc()
            raise
        if unknown := {
            item.book_id: index
            for index, item in enumerate(data.items)
            if item.book_id not in books
        }:
            ORDERS_CREATED.labels("unknown_books").inc()
            raise UnknownBooks(unknown)
        lines, total = price_lines(data.items, books)
        order = await self.orders.add(customer_id=data.customer_id, total_price=total, items=lines)
        await add_event(self.session, topic=ORDER_PLACED, payload=_order_placed(order))
        response = StoredResponse(
            status=201,
            headers={"location": f"{ORDERS_PATH}/{order.id}", "content-type": "application/json"},
            body=msgspec.json.encode(OrderRead.of(order)),
        )
        if claim is not None and not await idempotency.complete(
            self.session, claim, response=response, order_id=order.id
        ):
            # Our claim went stale and another request took the key over: let it win.
            raise IdempotencyKeyInFlight()
        ORDERS_CREATED.labels("created").inc()
        return response

    async def get_order(self, *, order_id: int) -> Order:
        order = await self.orders.get(order_id=order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return order

    async def list_orders(
        self, *, limit: int, offset: int, status: OrderStatus | None, customer_id: int | None
    ) -> tuple[list[Order], int]:
        orders = await self.orders.list(
            limit=limit, offset=offset, status=status, customer_id=customer_id
        )
        total = await self.orders.count(status=status, customer_id=customer_id)
        return orders, total


def _order_placed(order: Order) -> dict[str, object]:
    return {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "total_price": money(order.total_price),
        "items": [
            {
                "book_id": item.book_id,
                "quantity": item.quantity,
                "unit_price": money(item.unit_price),
            }
            for item in order.items
        ],
    }
