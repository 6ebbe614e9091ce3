"""The library's figures (one SQL statement each) and its periodic sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.holds import HoldService
from orders.lending.lost import LostItems
from orders.lending.notices import NoticeService
from orders.lending.schemas import DailyLoans, LibrarySummary, PopularBook, SweepRead, TopMember
from orders.metrics import (
    LIBRARY_HOLDS_READY,
    LIBRARY_HOLDS_WAITING,
    LIBRARY_LOANS_OUT,
    LIBRARY_LOANS_OVERDUE,
)

# The loan and hold counts walk partial indexes (loans out by due date, waiting and ready
# holds), so they cost the same at 4M loans as at 4,000; the two member counts read the
# members table, one row per member (60k at the high_scale seed: a few milliseconds).
SUMMARY_SQL = text(
    """
    SELECT
        (SELECT count(*) FROM borrows WHERE status = 'active') AS loans_out,
        (SELECT count(*) FROM borrows WHERE status = 'active' AND due_at < now()) AS overdue,
        (SELECT count(*) FROM holds WHERE status = 'waiting') AS holds_waiting,
        (SELECT count(*) FROM holds WHERE status = 'ready') AS holds_ready,
        (SELECT count(*) FROM members WHERE deleted_at IS NULL) AS members,
        (SELECT count(*) FROM members WHERE deleted_at IS NULL AND loans_out > 0)
            AS members_borrowing
    """
)
POPULAR_SQL = text(
    """
    SELECT p.book_id, latest.book_title, latest.book_author, p.loans
    FROM (
        SELECT book_id, count(*) AS loans FROM borrows
        WHERE requested_at >= now() - :window AND status IN ('active', 'returned')
        GROUP BY book_id
        ORDER BY loans DESC, book_id
        LIMIT :limit
    ) p
    CROSS JOIN LATERAL (
        SELECT book_title, book_author FROM borrows b
        WHERE b.book_id = p.book_id AND b.status IN ('active', 'returned')
        ORDER BY b.requested_at DESC, b.id DESC
        LIMIT 1
    ) latest
    ORDER BY p.loans DESC, p.book_id
    """
)
TOP_MEMBERS_SQL = text(
    """
    SELECT b.member_id, m.name, b.loans
    FROM (
        SELECT member_id, count(*) AS loans FROM borrows
        WHERE requested_at >= now() - :window AND status IN ('active', 'returned')
        GROUP BY member_id
        ORDER BY loans DESC, member_id
        LIMIT :limit
    ) b
    JOIN members m ON m.id = b.member_id
    ORDER BY b.loans DESC, b.member_id
    """
)
# Days are UTC days; every day of the window is listed, those without a loan as 0.
DAILY_SQL = text(
    """
    SELECT day::date AS day, count(b.requested_at) AS loans
    FROM generate_series(
        (now() AT TIME ZONE 'UTC')::date - (:days - 1), (now() AT TIME ZONE 'UTC')::date,
        interval '1 day'
    ) AS day
    LEFT JOIN borrows b
        ON b.requested_at >= day AT TIME ZONE 'UTC'
        AND b.requested_at < (day + interval '1 day') AT TIME ZONE 'UTC'
        AND b.status IN ('active', 'returned')
    GROUP BY day
    ORDER BY day
    """
)
SWEEP_BATCH = 500


class LibraryService:
    def __init__(self, session: AsyncSession, *, holds: HoldService, due_soon: timedelta) -> None:
        self.session = session
        self.holds = holds
        self.notices = NoticeService(session)
        self.due_soon = due_soon

    async def summary(self) -> LibrarySummary:
        row = (await self.session.execute(SUMMARY_SQL)).one()
        return LibrarySummary(
            loans_out=row.loans_out,
            overdue=row.overdue,
            holds_waiting=row.holds_waiting,
            holds_ready=row.holds_ready,
            members=row.members,
            members_borrowing=row.members_borrowing,
            utilization=round(row.members_borrowing / row.members, 4) if row.members else 0.0,
        )

    async def popular(self, *, days: int, limit: int) -> list[PopularBook]:
        rows = await self.session.execute(POPULAR_SQL, _window(days, limit))
        return [PopularBook(**row._mapping) for row in rows]

    async def top_members(self, *, days: int, limit: int) -> list[TopMember]:
        rows = await self.session.execute(TOP_MEMBERS_SQL, _window(days, limit))
        return [TopMember(**row._mapping) for row in rows]

    async def daily(self, *, days: int) -> list[DailyLoans]:
        rows = await self.session.execute(DAILY_SQL, {"days": days})
        return [DailyLoans(**row._mapping) for row in rows]

    async def sweep(self) -> SweepRead:
        """One bounded round of the periodic work: expire uncollected holds (their copies
        move on), resume suspended holds whose date has come, declare loans lost (see
        `orders.lending.lost`), record today's notices, mail yesterday's digests, refresh
        the gauges. `more` asks for another."""
        expired = await self.holds.expire_uncollected(limit=SWEEP_BATCH)
        resumed = await self.holds.resume_due(limit=SWEEP_BATCH)
        lost = await LostItems(self.session).declare(limit=SWEEP_BATCH)
        recorded, more_notices = await self.notices.record_due(
            limit=SWEEP_BATCH, due_soon=self.due_soon
        )
        digests, more_digests = await self.notices.send_digests(limit=SWEEP_BATCH)
        summary = await self.summary()
        LIBRARY_LOANS_OUT.set(summary.loans_out)
        LIBRARY_LOANS_OVERDUE.set(summary.overdue)
        LIBRARY_HOLDS_WAITING.set(summary.holds_waiting)
        LIBRARY_HOLDS_READY.set(summary.holds_ready)
        return SweepRead(
            expired_holds=expired,
            resumed_holds=resumed,
            lost_loans=lost,
            notices=recorded,
            digests=digests,
            more=SWEEP_BATCH in (expired, resumed, lost) or more_notices or more_digests,
        )


def _window(days: int, limit: int) -> dict[str, Any]:
    return {"window": timedelta(days=days), "limit": limit}
