"""What lending tells the workers, through the outbox (docs/lending.md has the routes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.models import NoticeKind
from servicekit.outbox import add_event

BORROW_REQUESTED = "borrow.requested"
COPY_FREED = "copy.freed"
HOLD_PLACED = "hold.placed"
HOLD_CHECKED_OUT = "hold.checked_out"
NOTICE_REQUESTED = "notice.requested"
BORROW_GIVEN_UP = "borrow.given_up"


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


async def notice_requested(
    session: AsyncSession,
    *,
    notice_id: int,
    kind: NoticeKind,
    member_id: int,
    email: str,
    name: str,
    book_id: int,
    book_title: str,
    deadline: datetime,
) -> None:
    """One email: what it is about and the date that matters (due date or pickup deadline)."""
    payload: dict[str, Any] = {
        "notice_id": notice_id,
        "kind": kind.value,
        "member_id": member_id,
        "email": email,
        "name": name,
        "book_id": book_id,
        "book_title": book_title,
        "deadline": deadline.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    await add_event(session, topic=NOTICE_REQUESTED, payload=payload)
