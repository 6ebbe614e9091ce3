"""The library's calendar: the days it is closed. A due date set while a day is closed
moves past it (see `orders.lending.repository.due_date`). A closing — days closed at
short notice — also moves the loans and ready holds already out that fall on its days,
through a job (`workers.loans.move_due_dates`) in bounded batches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending import events
from orders.lending.errors import (
    ClosedDayExists,
    ClosedDayNotFound,
    ClosingNotFound,
    InvalidChange,
)
from orders.lending.models import ClosedDay, Closing, ClosingStatus
from orders.lending.rule_repository import ClosedDayRepository, ClosingRepository
from orders.lending.rule_schemas import ClosedDayCreate, ClosingCreate

# Loans (and holds) moved per statement: each batch is one short transaction.
MOVE_BATCH = 500
# As the table's CHECK: a year of days at most.
MAX_CLOSING = timedelta(days=365)


class CalendarService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.days = ClosedDayRepository(session)
        self.closings = ClosingRepository(session)

    async def closed_days(self, *, since: date | None) -> Sequence[ClosedDay]:
        return await self.days.list(since=since)

    async def close(self, *, data: ClosedDayCreate) -> ClosedDay:
        closed = await self.days.add(day=data.day, reason=data.reason.strip())
        if closed is None:
            raise ClosedDayExists(data.day)
        return closed

    async def reopen(self, *, day: date) -> None:
        if not await self.days.delete(day=day):
            raise ClosedDayNotFound(day)

    async def close_at_short_notice(self, *, data: ClosingCreate) -> Closing:
        """Close the days from `first_day` to `last_day` and have a job move what falls
        on them; the closing says how far it got."""
        today = datetime.now(UTC).date()
        if data.first_day < today:
            raise InvalidChange(
                f"A closing starts today ({today}) or later, not {data.first_day}: loans "
                "returned already cannot be moved.",
                field="first_day",
                message=f"on or after {today}",
            )
        if not data.first_day <= data.last_day <= data.first_day + MAX_CLOSING:
            raise InvalidChange(
                f"A closing ends on its first day or up to {MAX_CLOSING.days} days after it, "
                f"not {data.last_day}.",
                field="last_day",
                message=f"from {data.first_day} to {data.first_day + MAX_CLOSING}",
            )
        closing = await self.closings.add(
            first_day=data.first_day, last_day=data.last_day, reason=data.reason.strip()
        )
        await events.closing_announced(self.session, closing_id=closing.id)
        return closing

    async def closing(self, *, closing_id: int) -> Closing:
        closing = await self.closings.get(closing_id=closing_id)
        if closing is None:
            raise ClosingNotFound(closing_id)
        return closing

    async def list_closings(self, *, limit: int, offset: int) -> tuple[Sequence[Closing], int]:
        found = await self.closings.list(limit=limit, offset=offset)
        return found, await self.closings.count()

    async def move_batch(self, *, closing_id: int) -> Closing:
        """One batch of the closing's move; `done` once a batch finds less than a full
        one. The closing row is locked meanwhile, so two jobs of one closing take turns
        and count each move once; a done closing answers as it is."""
        closing = await self.closings.get(closing_id=closing_id, lock=True)
        if closing is None:
            raise ClosingNotFound(closing_id)
        if closing.status is ClosingStatus.DONE:
            return closing
        loans = await self.closings.move_loans(closing, limit=MOVE_BATCH)
        holds = await self.closings.move_pickups(closing, limit=MOVE_BATCH)
        done = loans < MOVE_BATCH and holds < MOVE_BATCH
        await self.closings.count_moved(closing, loans=loans, holds=holds, done=done)
        return closing
