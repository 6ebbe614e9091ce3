"""Notice rules: which are due when, who gets them how (each on its own, or a daily digest),
and the delivery record the workers keep up to date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import groupby

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending import events
from orders.lending.errors import MemberNotFound, NoticesNotFound
from orders.lending.models import Member, Notice, NoticeKind, NoticeStatus
from orders.lending.notice_repository import NoticeMail, NoticeRepository
from orders.lending.repository import MemberRepository
from orders.lending.schemas import DeliveryOutcome, DeliveryReport


def utc_today() -> date:
    return datetime.now(UTC).date()


class NoticeService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.notices = NoticeRepository(session)
        self.members = MemberRepository(session)

    async def record_due(self, *, limit: int, due_soon: timedelta) -> tuple[int, bool]:
        """Today's new notices of every kind, at most `limit` of each, in the order a
        subject goes through them; how many, and whether a kind had more."""
        day = utc_today()
        recorded, more = 0, False
        for kind in NoticeKind:
            mails = await self.notices.record_due(
                kind=kind, day=day, limit=limit, due_soon=due_soon
            )
            await self._tell(mails)
            recorded += len(mails)
            more = more or len(mails) == limit
        return recorded, more

    async def send_digests(self, *, limit: int) -> tuple[int, bool]:
        """One mail per member and past day with that day's digest notices (at most
        `limit` digests); how many, and whether there are more."""
        mails = await self.notices.gather_digests(before=utc_today(), limit=limit)
        digests = [list(d) for _, d in groupby(mails, key=lambda mail: mail.digest_id)]
        for digest in digests:
            await events.digest_requested(self.session, digest)
        return len(digests), len(digests) == limit

    async def hold_ready(self, *, hold_id: int, member: Member, deadline: datetime) -> None:
        """The "your copy is ready" notice, at once rather than at the next sweep."""
        mail = await self.notices.record(
            kind=NoticeKind.HOLD_READY,
            subject_id=hold_id,
            member=member,
            day=utc_today(),
            deadline=deadline,
        )
        if mail is not None:
            await self._tell([mail])

    async def _tell(self, mails: list[NoticeMail]) -> None:
        """A mail job for each notice of a member who gets them one by one; the others
        wait for the member's digest."""
        for mail in mails:
            if not mail.via_digest:
                await events.notice_requested(self.session, mail)

    async def report(self, *, data: DeliveryReport) -> list[Notice]:
        """Record how one attempt to mail these notices went (idempotent: a repeat, or a
        report older than the last one recorded, changes nothing)."""
        ids = set(data.notice_ids)
        missing = ids - await self.notices.existing(notice_ids=ids)
        if missing:
            raise NoticesNotFound(sorted(missing))
        if data.outcome is DeliveryOutcome.SENT:
            await self.notices.record_sent(notice_ids=ids, attempt=data.attempt)
        else:
            await self.notices.record_failed(
                notice_ids=ids, attempt=data.attempt, error=data.error or "", final=data.final
            )
        return await self.notices.get_many(notice_ids=ids)

    async def of_member(
        self, *, member_id: int, status: NoticeStatus | None, limit: int, offset: int
    ) -> tuple[list[Notice], int]:
        if await self.members.get(member_id=member_id) is None:
            raise MemberNotFound(member_id)
        return await self.notices.page(
            member_id=member_id, status=status, limit=limit, offset=offset
        )

    async def list_notices(
        self, *, status: NoticeStatus | None, limit: int, offset: int
    ) -> tuple[list[Notice], int]:
        return await self.notices.page(member_id=None, status=status, limit=limit, offset=offset)
