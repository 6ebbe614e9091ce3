"""Messages to customers. For now they go to the log, as the record a mail sender takes."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from workers.payloads import parse_payload

logger = logging.getLogger(__name__)


class ConfirmedLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    book_id: int
    book_title: str
    quantity: int
    unit_price: Decimal


class OrderConfirmed(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: int
    customer_id: str | None = None
    total_price: Decimal
    lines: list[ConfirmedLine]


def order_confirmed(payload: dict[str, Any]) -> str:
    """Tell the customer their order is confirmed."""
    order = parse_payload(OrderConfirmed, payload)
    items = "\n".join(
        f"- {line.quantity} x {line.book_title} at {line.unit_price:.2f}" for line in order.lines
    )
    logger.info(
        "email.order_confirmed",
        extra={
            "event": "email.order_confirmed",
            "to": order.customer_id or "unknown",
            "subject": f"Your order {order.order_id} is confirmed",
            "body": (
                f"Thank you for your order {order.order_id}.\n\n{items}\n\n"
                f"Total: {order.total_price:.2f}"
            ),
            # A job may run twice (a retry after a timeout); a mail sender drops repeats
            # of the same key, so the customer gets one mail.
            "idempotency_key": f"order-confirmed:{order.order_id}",
        },
    )
    return "sent"
