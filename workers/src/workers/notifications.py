"""Messages to customers: order confirmations (to the log, as the record a mail sender
takes) and library notices (real email, over SMTP)."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from workers import mail, metrics
from workers.config import get_settings
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
    settings = get_settings()
    dedup_key = f"order-confirmed:{order.order_id}"
    if mail.was_sent(dedup_key, settings):
        return "already sent"
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
            # The record a mail sender takes; it may see it twice if this process is
            # killed before the next line, and drops repeats of the same key.
            "idempotency_key": dedup_key,
        },
    )
    mail.record_sent(dedup_key, settings)
    return "sent"


class NoticeKind(StrEnum):
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    HOLD_READY = "hold_ready"


class Notice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    notice_id: int
    kind: NoticeKind
    member_id: int
    email: str
    name: str
    book_id: int
    book_title: str
    # The due date of a loan, or the pickup deadline of a ready hold.
    deadline: datetime


def notice_message(notice: Notice) -> EmailMessage:
    """The mail of a notice: the book, the date that matters, and what to do."""
    day = f"{notice.deadline:%A %d %B %Y}"
    title = notice.book_title
    subject, body = {
        NoticeKind.DUE_SOON: (
            f"Due soon: {title}",
            f'Your loan of "{title}" is due back on {day}.\n\n'
            "Return it by then, or renew it if nobody is waiting for it.",
        ),
        NoticeKind.OVERDUE: (
            f"Overdue: {title}",
            f'Your loan of "{title}" was due back on {day} and is overdue.\n\n'
            "Please return it as soon as you can: a late fee accrues for each day late.",
        ),
        NoticeKind.HOLD_READY: (
            f"Ready for pickup: {title}",
            f'A copy of "{title}" is set aside for you until {day}.\n\n'
            "Come and borrow it before then; after that it goes to the next member in line.",
        ),
    }[notice.kind]
    message = EmailMessage()
    message["To"] = notice.email
    message["Subject"] = subject
    # One id per notice (derived from its dedup key): a repeat a receiving server can drop.
    message["Message-ID"] = f"<{notice_key(notice)}@bookstore.local>"
    message["X-Notice-Kind"] = notice.kind.value
    message.set_content(f"Dear {notice.name},\n\n{body}\n\nYour library\n")
    return message


def notice_key(notice: Notice) -> str:
    return f"notice-{notice.notice_id}"


def send_notice(payload: dict[str, Any]) -> str:
    """Mail one library notice (due soon, overdue, hold ready) to the member."""
    notice = parse_payload(Notice, payload)
    try:
        sent = mail.send(notice_message(notice), get_settings(), dedup_key=notice_key(notice))
    except Exception:
        metrics.NOTICES.labels(notice.kind.value, "failed").inc()
        raise
    if not sent:
        logger.info("notice %s was mailed before: not again", notice.notice_id)
        return "already sent"
    metrics.NOTICES.labels(notice.kind.value, "sent").inc()
    logger.info(
        "notice %s (%s) mailed to member %s", notice.notice_id, notice.kind, notice.member_id
    )
    return "sent"
