"""What lending tells the workers, through the outbox (docs/lending.md has the routes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.notice_repository import NoticeMail
from servicekit.outbox import add_event

BORROW_REQUESTED = "borrow.requested"
COPY_FREED = "copy.freed"
HOLD_PLACED = "hold.placed"
HOLD_CHECKED_OUT = "hold.checked_out"
NOTICE_REQUESTED = "notice.requested"
DIGEST_REQUESTED = "notice.digest_requested"
BORROW_GIVEN_UP = "borrow.given_up"
CLOSING_ANNOUNCED = "closing.announced"


async def borrow_requested(session: AsyncSession, *, borrow_id: int, book_id: int) -> None:
    """Check a copy out for the borrow (or make it a hold)."""
    await add_event(
        session, topic=BORROW_REQUESTED, payload={"borrow_id": borrow_id, "book_id": book_id}
    )


async def borrow_given_up(session: AsyncSession, *, borrow_id: int, book_id: int) -> None:
    """The reconciler gave the borrow up: a copy it may have got moves on."""
    await add_event(
        session, topic=BORROW_GIVEN_UP, payload={"borrow_id": borrow_id, "book_id": book_id}
    )


async def copy_freed(session: AsyncSession, *, book_id: int, reference: str) -> None:
    """The copy out under `reference` goes to the next waiting hold, or back on the shelf."""
    await add_event(session, topic=COPY_FREED, payload={"book_id": book_id, "reference": reference})


async def hold_placed(session: AsyncSession, *, hold_id: int, book_id: int) -> None:
    """Try to fill the hold from the shelf at once."""
    await add_event(session, topic=HOLD_PLACED, payload={"hold_id": hold_id, "book_id": book_id})


async def hold_checked_out(
    session: AsyncSession, *, hold_id: int, borrow_id: int, book_id: int
) -> None:
    """The copy set aside for the hold now belongs to the loan."""
    await add_event(
        session,
        topic=HOLD_CHECKED_OUT,
        payload={"hold_id": hold_id, "borrow_id": borrow_id, "book_id": book_id},
    )


async def notice_requested(session: AsyncSession, mail: NoticeMail) -> None:
    """One email: what it is about and the date that matters (due date or pickup deadline)."""
    payload = {"notice_id": mail.notice_id, **_member_of(mail), **_about(mail)}
    await add_event(session, topic=NOTICE_REQUESTED, payload=payload)


async def digest_requested(session: AsyncSession, digest: Sequence[NoticeMail]) -> None:
    """One email to one member with all the notices of their day."""
    first = digest[0]
    payload = {
        "digest_id": first.digest_id,
        **_member_of(first),
        "notices": [{"notice_id": mail.notice_id, **_about(mail)} for mail in digest],
    }
    await add_event(session, topic=DIGEST_REQUESTED, payload=payload)


def _member_of(mail: NoticeMail) -> dict[str, Any]:
    return {"member_id": mail.member_id, "email": mail.email, "name": mail.name}


def _about(mail: NoticeMail) -> dict[str, Any]:
    return {
        "kind": mail.kind.value,
        "book_id": mail.book_id,
        "book_title": mail.book_title,
        "deadline": mail.deadline.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


async def closing_announced(session: AsyncSession, *, closing_id: int) -> None:
    """Move the due dates and pickup deadlines that fall on the closing's days."""
    await add_event(session, topic=CLOSING_ANNOUNCED, payload={"closing_id": closing_id})
