"""Order rules: what may be placed, how it is priced, and what a retry gets back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import partial

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from orders import idempotency
from orders.books_client import BooksClient, BookSnapshot
from orders.errors import (
    BooksContractBroken,
    BooksUnavailable,
    IdempotencyKeyInFlight,
    IllegalTransition,
)
from orders.idempotency import Answer, Claimed, IdempotencyStore, StoredResponse, respond_once
from orders.metrics import (
    ORDERS_CREATED,
    ORDERS_REJECTED,
    REVENUE,
    STATUS_TRANSITIONS,
    STATUS_TRANSITIONS_NOT_APPLIED,
)
from orders.ordering.errors import (
    InsufficientStock,
    OrderNotFound,
    RepeatedBooks,
    Shortage,
    UnknownBooks,
)
from orders.ordering.models import Order, OrderItem, OrderStatus
from orders.ordering.repository import OrderRepository
from orders.ordering.schemas import (
    OrderCreate,
    OrderItemCreate,
    OrderRead,
    RejectionCause,
)
from orders.saga import RedrivePolicy, Settled, given_up_reason
from servicekit.api_keys import ApiKey
from servicekit.database import after_commit
from servicekit.outbox import add_event

ORDERS_PATH = "/v1/orders"
ORDER_PLACED = "order.placed"
ORDER_CONFIRMED = "order.confirmed"
ORDER_CANCELLED = "order.cancelled"
# Given up by the reconciler: whatever stock the order may hold goes back.
ORDER_GIVEN_UP = "order.given_up"

# The statuses each status may be reached from; everything else is an illegal transition.
REACHABLE_FROM: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CONFIRMED: frozenset({OrderStatus.PENDING}),
    OrderStatus.REJECTED: frozenset({OrderStatus.PENDING}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.PENDING, OrderStatus.CONFIRMED}),
}


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


def stock_shortages(
    items: Sequence[OrderItemCreate], books: Mapping[int, BookSnapshot]
) -> list[Shortage]:
    """Lines asking for more than books has; books that do not track stock never fall short."""
    shortages = []
    for index, item in enumerate(items):
        available = books[item.book_id].stock
        if available is not None and item.quantity > available:
            shortages.append(Shortage(index, item.book_id, item.quantity, available))
    return shortages


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

    async def place_order(
        self, *, data: OrderCreate, idempotency_key: str | None, client: ApiKey
    ) -> Answer:
        """Place an order once: a retry with the same key gets the first answer back."""
        if repeats := data.repeated_lines():
            raise RepeatedBooks(
                {index: (data.items[index].book_id, first) for index, first in repeats.items()}
            )
        return await respond_once(
            self.idempotency_store,
            self.session,
            api_key_id=client.id,
            key=idempotency_key,
            fingerprint=idempotency.fingerprint(
                b"POST", ORDERS_PATH.encode(), msgspec.json.encode(data)
            ),
            respond=partial(self._place, data),
            count=lambda outcome: ORDERS_CREATED.labels(outcome).inc(),
        )

    async def _place(self, data: OrderCreate, claim: Claimed | None) -> StoredResponse:
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
        # A better answer than a later rejection; the reservation by the workers still
        # decides, since stock may change between this check and the reservation.
        if shortages := stock_shortages(data.items, books):
            ORDERS_CREATED.labels("insufficient_stock").inc()
            raise InsufficientStock(shortages)
        lines, total = price_lines(data.items, books)
        order = await self.orders.add(customer_id=data.customer_id, total_price=total, items=lines)
        await add_event(self.session, topic=ORDER_PLACED, payload=_order_placed(order))
        response = StoredResponse(
            status=201,
            headers={"location": f"{ORDERS_PATH}/{order.id}", "content-type": "application/json"},
            body=msgspec.json.encode(order),
        )
        if claim is not None and not await idempotency.complete(
            self.session, claim, response=response, order_id=order.id
        ):
            # Our claim went stale and another request took the key over: let it win.
            raise IdempotencyKeyInFlight()
        after_commit(self.session, ORDERS_CREATED.labels("created").inc)
        return response

    async def confirm_order(self, *, order_id: int) -> OrderRead:
        """pending -> confirmed, announced by `order.confirmed`; a repeat changes nothing."""
        order, moved = await self._move(order_id=order_id, to=OrderStatus.CONFIRMED, repeat_ok=True)
        if moved:
            await add_event(self.session, topic=ORDER_CONFIRMED, payload=_order_confirmed(order))
            after_commit(self.session, partial(REVENUE.inc, float(order.total_price)))
        return order

    async def reject_order(self, *, order_id: int, reason: str, cause: RejectionCause) -> OrderRead:
        """pending -> rejected with `reason`; a repeat changes nothing, the first reason stays."""
        order, moved = await self._move(
            order_id=order_id, to=OrderStatus.REJECTED, repeat_ok=True, rejection_reason=reason
        )
        if moved:
            after_commit(self.session, ORDERS_REJECTED.labels(cause).inc)
        return order

    async def cancel_order(self, *, order_id: int) -> OrderRead:
        """pending or confirmed -> cancelled, announced by `order.cancelled` (stock goes back)."""
        order, _ = await self._move(order_id=order_id, to=OrderStatus.CANCELLED, repeat_ok=False)
        await self._release_stock(order_id=order.id, topic=ORDER_CANCELLED)
        return order

    async def _release_stock(self, *, order_id: int, topic: str) -> None:
        """Announce that the order's stock goes back, and wait for a worker to report it
        done (`stock_released`); until then the reconciler announces it again."""
        await add_event(self.session, topic=topic, payload={"order_id": order_id})
        await self.orders.expect_release(order_id=order_id)

    async def settle_stalled(self, *, policy: RedrivePolicy) -> Settled:
        """Announce pending orders again whose job is overdue, or give them up (see
        orders.saga); one batch."""
        stalled = await self.orders.stalled(policy=policy)
        redriven = [order for order in stalled if not policy.gives_up(order.redrives)]
        for order in redriven:
            await add_event(self.session, topic=ORDER_PLACED, payload=_order_placed(order))
        await self.orders.count_redrive(order_ids=[order.id for order in redriven])
        given_up = [order for order in stalled if policy.gives_up(order.redrives)]
        reason = given_up_reason(policy, "The stock reservation")
        for order in given_up:
            await self.reject_order(
                order_id=order.id, reason=reason, cause=RejectionCause.UNSETTLED
            )
            await self._release_stock(order_id=order.id, topic=ORDER_GIVEN_UP)
        return Settled(redriven=len(redriven), given_up=len(given_up))

    async def settle_stalled_releases(self, *, policy: RedrivePolicy) -> Settled:
        """Announce again the stock release of cancelled and given-up orders that no
        worker has reported done (see orders.saga); one batch. A release is never given
        up: stock held by an order that no longer wants it must come back, so it is
        re-driven, at most `2^max_redrives` times `stall_after` apart, until it does."""
        stalled = await self.orders.stalled_releases(policy=policy)
        for order in stalled:
            topic = ORDER_CANCELLED if order.status is OrderStatus.CANCELLED else ORDER_GIVEN_UP
            await add_event(self.session, topic=topic, payload={"order_id": order.id})
        await self.orders.count_redrive(order_ids=[order.id for order in stalled])
        return Settled(redriven=len(stalled), given_up=0)

    async def stock_released(self, *, order_id: int) -> None:
        """A worker reports the order's stock given back (a repeat changes nothing)."""
        if not await self.orders.released(order_id=order_id):
            raise OrderNotFound(order_id)

    async def _move(
        self,
        *,
        order_id: int,
        to: OrderStatus,
        repeat_ok: bool,
        rejection_reason: str | None = None,
    ) -> tuple[OrderRead, bool]:
        """The order after moving it to `to`, and whether it moved just now.

        The conditional update decides; the row read when it did not move only tells why:
        no such order, already there (fine when `repeat_ok`), or an illegal move.
        """
        moved = await self.orders.change_status(
            order_id=order_id,
            to=to,
            allowed_from=REACHABLE_FROM[to],
            rejection_reason=rejection_reason,
        )
        if moved is not None:
            after_commit(self.session, STATUS_TRANSITIONS.labels(to).inc)
            return moved, True
        order = await self.orders.get(order_id=order_id)
        if order is None:
            STATUS_TRANSITIONS_NOT_APPLIED.labels(to, "not_found").inc()
            raise OrderNotFound(order_id)
        if repeat_ok and order.status == to:
            STATUS_TRANSITIONS_NOT_APPLIED.labels(to, "already").inc()
            return order, False
        STATUS_TRANSITIONS_NOT_APPLIED.labels(to, "illegal").inc()
        raise IllegalTransition(f"Order {order_id}", current=order.status, target=to)


def _order_placed(order: Order | OrderRead) -> dict[str, object]:
    """What the stock job reserves."""
    return {
        "order_id": order.id,
        "lines": [{"book_id": item.book_id, "quantity": item.quantity} for item in order.items],
    }


def _order_confirmed(order: OrderRead) -> dict[str, object]:
    """What the confirmation message says."""
    return {
        "order_id": order.id,
        "customer_id": None if order.customer_id is None else str(order.customer_id),
        "total_price": order.total_price,
        "lines": [
            {
                "book_id": item.book_id,
                "book_title": item.book_title,
                "quantity": item.quantity,
                "unit_price": item.unit_price,
            }
            for item in order.items
        ],
    }
