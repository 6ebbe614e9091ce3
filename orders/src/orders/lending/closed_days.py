"""The library's calendar: the days it is closed. A due date set while a day is closed
moves past it (see `orders.lending.repository.due_date`); loans already out keep theirs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.errors import ClosedDayExists, ClosedDayNotFound
from orders.lending.models import ClosedDay
from orders.lending.rule_repository import ClosedDayRepository
from orders.lending.rule_schemas import ClosedDayCreate


class CalendarService:
    def __init__(self, session: AsyncSession) -> None:
        self.days = ClosedDayRepository(session)

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
