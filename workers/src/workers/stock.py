"""The stock saga: a placed order reserves stock at books, then orders hears the outcome.

Every step is idempotent, so a job that runs twice (a retry, a worker killed mid-job, a
relay delivering again) ends where one run would: books replays the first outcome of a
reference, and orders accepts a confirmation or rejection it already has.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workers import clients
from workers.clients import ReservationStatus, Shortage, ShortageReason, StockLine
from workers.payloads import parse_payload

logger = logging.getLogger(__name__)


class OrderPlaced(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: int
    lines: list[StockLine] = Field(min_length=1)


class OrderCancelled(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: int


def place_order(payload: dict[str, Any]) -> str:
    """Reserve the order's stock, then confirm it, or reject it with the shortages."""
    order = parse_payload(OrderPlaced, payload)
    reference = stock_reference(order.order_id)
    reservation = clients.books().reserve_stock(reference=reference, lines=order.lines)
    if reservation.status is ReservationStatus.RESERVED:
        if clients.orders().confirm_order(order_id=order.order_id) is not None:
            logger.info("order %s confirmed", order.order_id)
            return "confirmed"
        # The customer cancelled while the stock was being reserved: give it back.
        clients.books().release_stock(reference=reference)
        logger.info("order %s was cancelled meanwhile; its stock was released", order.order_id)
        return "released"
    if reservation.status is ReservationStatus.REJECTED:
        reason = rejection_reason(reservation.shortages)
        cause = reservation.shortages[0].reason
        if (
            clients.orders().reject_order(order_id=order.order_id, reason=reason, cause=cause)
            is None
        ):
            logger.info("order %s was cancelled before it could be rejected", order.order_id)
        else:
            logger.info("order %s rejected: %s", order.order_id, reason)
        return "rejected"
    # Reserved once and released by a cancellation that has already run.
    logger.info("order %s: its reservation was already released", order.order_id)
    return "released"


def cancel_order(payload: dict[str, Any]) -> str:
    """Give back whatever the order reserved (nothing, if it never got that far), then
    report it done; until orders hears that, its reconciler announces the release again."""
    order = parse_payload(OrderCancelled, payload)
    release = clients.books().release_stock(reference=stock_reference(order.order_id))
    clients.orders().stock_released(order_id=order.order_id)
    logger.info("order %s cancelled: stock %s", order.order_id, release.status)
    return release.status.value


def stock_reference(order_id: int) -> str:
    return f"order:{order_id}"


def rejection_reason(shortages: list[Shortage]) -> str:
    """`insufficient stock for book 7: requested 3, available 1; book 9 not found`."""
    return "; ".join(_describe(shortage) for shortage in shortages)


def _describe(shortage: Shortage) -> str:
    if shortage.reason is ShortageReason.BOOK_NOT_FOUND:
        return f"book {shortage.book_id} not found"
    if shortage.reason is ShortageReason.BOOK_INACTIVE:
        return f"book {shortage.book_id} is no longer sold"
    return (
        f"insufficient stock for book {shortage.book_id}: "
        f"requested {shortage.requested}, available {shortage.available}"
    )
