"""Messages to customers: order confirmations (to the log, as the record a mail sender
takes) and library notices (real email, over SMTP)."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rq import get_current_job

from workers import clients, mail, metrics
from workers.config import get_settings
from workers.errors import PermanentJobError, ServiceUnavailable
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
    OVERDUE_1 = "overdue_1"
    OVERDUE_2 = "overdue_2"
    OVERDUE_3 = "overdue_3"
    HOLD_READY = "hold_ready"
    HOLD_EXPIRING = "hold_expiring"


class About(BaseModel):
    """What one notice is about: a book, and the date that matters."""

    model_config = ConfigDict(extra="ignore")

    notice_id: int
    kind: NoticeKind
    book_id: int
    book_title: str
    # The due date of a loan, or the pickup deadline of a ready hold.
    deadline: datetime

    @field_validator("kind", mode="before")
    @classmethod
    def former_overdue_is_the_first(cls, kind: object) -> object:
        """A job enqueued before orders migration 0016 says `overdue`: that notice is now
        the first overdue notice."""
        return NoticeKind.OVERDUE_1 if kind == "overdue" else kind


class Addressee(BaseModel):
    model_config = ConfigDict(extra="ignore")

    member_id: int
    email: str
    name: str


class Notice(About, Addressee):
    """One notice, mailed on its own."""


class Digest(Addressee):
    """A member's notices of one day, in one mail."""

    digest_id: int
    notices: list[About] = Field(min_length=1)


def notice_text(notice: About) -> tuple[str, str]:
    """The subject and the paragraph of a notice: the book, the date, what to do."""
    day = f"{notice.deadline:%A %d %B %Y}"
    title = notice.book_title
    overdue = (
        f'Your loan of "{title}" was due back on {day} and is overdue.\n\n'
        "Please return it as soon as you can: a late fee accrues for each day late."
    )
    return {
        NoticeKind.DUE_SOON: (
            f"Due soon: {title}",
            f'Your loan of "{title}" is due back on {day}.\n\n'
            "Return it by then, or renew it if nobody is waiting for it.",
        ),
        NoticeKind.OVERDUE_1: (f"Overdue: {title}", overdue),
        NoticeKind.OVERDUE_2: (f"Second notice, overdue: {title}", overdue),
        NoticeKind.OVERDUE_3: (
            f"Final notice, overdue: {title}",
            f"{overdue}\n\nThis is the final notice: until it is back, you may be unable "
            "to borrow, renew or place holds.",
        ),
        NoticeKind.HOLD_READY: (
            f"Ready for pickup: {title}",
            f'A copy of "{title}" is set aside for you until {day}.\n\n'
            "Come and borrow it before then; after that it goes to the next member in line.",
        ),
        NoticeKind.HOLD_EXPIRING: (
            f"Last day for pickup: {title}",
            f'The copy of "{title}" set aside for you waits only until {day}.\n\n'
            "Come and borrow it before then; after that it goes to the next member in line.",
        ),
    }[notice.kind]


def _message(to: Addressee, subject: str, body: str, *, key: str, kind: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to.email
    message["Subject"] = subject
    # One id per mail (derived from its dedup key): a repeat a receiving server can drop.
    message["Message-ID"] = f"<{key}@bookstore.local>"
    message["X-Notice-Kind"] = kind
    message.set_content(f"Dear {to.name},\n\n{body}\n\nYour library\n")
    return message


def notice_message(notice: Notice) -> EmailMessage:
    subject, body = notice_text(notice)
    return _message(notice, subject, body, key=notice_key(notice), kind=notice.kind.value)


def digest_message(digest: Digest) -> EmailMessage:
    """All the notices in one mail, each under its own subject line."""
    parts = [f"{subject}\n{body}" for subject, body in map(notice_text, digest.notices)]
    count = len(digest.notices)
    subject = f"Your library: {count} notice{'s' if count > 1 else ''}"
    body = "\n\n---\n\n".join(parts)
    return _message(digest, subject, body, key=digest_key(digest), kind="digest")


def notice_key(notice: Notice) -> str:
    return f"notice-{notice.notice_id}"


def digest_key(digest: Digest) -> str:
    """The digest's id and its last notice: a digest gathered again with a notice more
    (recorded late for its day) is another mail."""
    return f"notice-digest-{digest.digest_id}-{digest.notices[-1].notice_id}"


def send_notice(payload: dict[str, Any]) -> str:
    """Mail one library notice (due soon, overdue, hold ready or expiring) to the member."""
    notice = parse_payload(Notice, payload)
    return _deliver(notice_message(notice), dedup_key=notice_key(notice), notices=[notice])


def send_digest(payload: dict[str, Any]) -> str:
    """Mail a member's notices of one day in one mail."""
    digest = parse_payload(Digest, payload)
    return _deliver(digest_message(digest), dedup_key=digest_key(digest), notices=digest.notices)


def _deliver(message: EmailMessage, *, dedup_key: str, notices: list[About]) -> str:
    """Send the mail once, and report the attempt's outcome to orders (the notices'
    delivery record): sent, or failed with the reason and whether RQ tries again."""
    attempt = _count_attempt()
    ids = [notice.notice_id for notice in notices]
    try:
        sent = mail.send(message, get_settings(), dedup_key=dedup_key)
    except Exception as exc:
        for notice in notices:
            metrics.NOTICES.labels(notice.kind.value, "failed").inc()
        _report_failure(ids, attempt=attempt, error=str(exc), final=_last_attempt(exc))
        raise
    # Also after a repeat (the mail went out, the report did not): orders learns it now.
    clients.lending().report_delivery(notice_ids=ids, attempt=attempt, sent=True)
    if not sent:
        logger.info("%s was mailed before: not again", dedup_key)
        return "already sent"
    for notice in notices:
        metrics.NOTICES.labels(notice.kind.value, "sent").inc()
    logger.info("%s (notices %s) mailed to %s", dedup_key, ids, message["To"])
    return "sent"


def _count_attempt() -> int:
    """This run's number among the runs of its job (kept in the job's meta, which RQ's
    retries keep); 1 outside a job."""
    job = get_current_job()
    if job is None:
        return 1
    attempt = int(job.meta.get("attempt", 0)) + 1
    job.meta["attempt"] = attempt
    job.save_meta()  # type: ignore[no-untyped-call]
    return attempt


def _last_attempt(exc: Exception) -> bool:
    """Whether RQ gives up after this failure (no retry left, or one that cannot help)."""
    job = get_current_job()
    return isinstance(exc, PermanentJobError) or job is None or not job.retries_left


def _report_failure(ids: list[int], *, attempt: int, error: str, final: bool) -> None:
    """Best effort: the mail's own error is what the job fails with; when orders cannot
    hear of it now, the next attempt reports again."""
    try:
        clients.lending().report_delivery(
            notice_ids=ids, attempt=attempt, sent=False, error=error[:2000], final=final
        )
    except (ServiceUnavailable, PermanentJobError) as exc:
        logger.warning("could not record the failed delivery of notices %s: %s", ids, exc)
