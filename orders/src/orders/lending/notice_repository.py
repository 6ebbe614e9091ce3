"""All SQL about notices: which are due, recording each once, digests, delivery records.

A notice is unique per (kind, subject, deadline) (migration 0016): the statements that
record them insert what is due and not yet recorded, and `ON CONFLICT DO NOTHING` settles
two sweeps racing for the same one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from orders.lending.models import (
    Borrow,
    BorrowStatus,
    Hold,
    HoldStatus,
    Member,
    Notice,
    NoticeDelivery,
    NoticeKind,
    NoticeStatus,
    Policy,
)
from orders.lending.repository import NO_SYNC, policy_days

OVERDUE_KINDS = (NoticeKind.OVERDUE_1, NoticeKind.OVERDUE_2, NoticeKind.OVERDUE_3)
LOAN_KINDS = (NoticeKind.DUE_SOON, *OVERDUE_KINDS)
HOLD_KINDS = (NoticeKind.HOLD_READY, NoticeKind.HOLD_EXPIRING)
# A notice of these kinds is due only once the one it follows (same subject and deadline)
# was recorded on an earlier day: the overdue notices go out in order, a day apart at
# least, even for a loan already long overdue; "expiring" only follows a "ready" notice
# that is a day old (a one-day pickup window gets the "ready" notice alone).
FOLLOWS = {
    NoticeKind.OVERDUE_2: NoticeKind.OVERDUE_1,
    NoticeKind.OVERDUE_3: NoticeKind.OVERDUE_2,
    NoticeKind.HOLD_EXPIRING: NoticeKind.HOLD_READY,
}
# A ready hold whose pickup deadline is this close gets the "expiring" notice.
EXPIRING_WITHIN = timedelta(days=1)


@dataclass(frozen=True)
class NoticeMail:
    """What the mail of one notice says, and whether it waits for the member's digest."""

    notice_id: int
    kind: NoticeKind
    member_id: int
    email: str
    name: str
    book_id: int
    book_title: str
    deadline: datetime
    via_digest: bool
    digest_id: int | None


def _due(kind: NoticeKind, due_soon: timedelta) -> Select[int, int, datetime | None]:
    """(subject_id, member_id, deadline) of the loans or holds due a notice of `kind` now."""
    now = func.now()
    if kind in LOAN_KINDS:
        loans = select(
            Borrow.id.label("subject_id"), Borrow.member_id, Borrow.due_at.label("deadline")
        ).where(Borrow.status == BorrowStatus.ACTIVE)
        if kind is NoticeKind.DUE_SOON:
            return loans.where(Borrow.due_at >= now, Borrow.due_at < now + due_soon)
        # The days after the due date, from the policy of the loan's member and item type.
        after = policy_days(
            Policy.overdue_notice_days[OVERDUE_KINDS.index(kind) + 1],
            member_id=Borrow.member_id,
            item_type=Borrow.item_type,
        )
        # The first condition walks the index of loans out by due date.
        return loans.where(Borrow.due_at < now, Borrow.due_at + after <= now)
    holds = select(
        Hold.id.label("subject_id"), Hold.member_id, Hold.pickup_by.label("deadline")
    ).where(Hold.status == HoldStatus.READY)
    if kind is NoticeKind.HOLD_EXPIRING:
        return holds.where(Hold.pickup_by > now, Hold.pickup_by <= now + EXPIRING_WITHIN)
    return holds


class NoticeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_due(
        self, *, kind: NoticeKind, day: date, limit: int, due_soon: timedelta
    ) -> list[NoticeMail]:
        """The new notices of `kind` (at most `limit`), recorded on `day`.

        NOT EXISTS keeps subjects noticed already out of the LIMIT, so each batch makes
        progress."""
        due = _due(kind, due_soon).subquery()
        same = aliased(Notice)
        conditions = [
            ~exists().where(
                same.kind == kind,
                same.subject_id == due.c.subject_id,
                same.deadline == due.c.deadline,
            )
        ]
        if (previous := FOLLOWS.get(kind)) is not None:
            conditions.append(
                exists().where(
                    same.kind == previous,
                    same.subject_id == due.c.subject_id,
                    same.deadline == due.c.deadline,
                    same.day < day,
                )
            )
        rows = (
            select(
                literal(kind.value),
                due.c.subject_id,
                due.c.member_id,
                literal(day),
                due.c.deadline,
                Member.notice_delivery == NoticeDelivery.DIGEST,
            )
            .join_from(due, Member, Member.id == due.c.member_id)
            .where(*conditions)
            .order_by(due.c.subject_id)
            .limit(limit)
        )
        statement = (
            pg_insert(Notice)
            .from_select(["kind", "subject_id", "member_id", "day", "deadline", "via_digest"], rows)
            .on_conflict_do_nothing()
            .returning(Notice.id)
        )
        return await self.mails(list((await self.session.scalars(statement)).all()))

    async def record(
        self, *, kind: NoticeKind, subject_id: int, member: Member, day: date, deadline: datetime
    ) -> NoticeMail | None:
        """The new notice, or None when this one was recorded already."""
        statement = (
            pg_insert(Notice)
            .values(
                kind=kind,
                subject_id=subject_id,
                member_id=member.id,
                day=day,
                deadline=deadline,
                via_digest=member.notice_delivery is NoticeDelivery.DIGEST,
            )
            .on_conflict_do_nothing()
            .returning(Notice.id)
        )
        notice_id = await self.session.scalar(statement)
        if notice_id is None:
            return None
        [mail] = await self.mails([notice_id])
        return mail

    async def gather_digests(self, *, before: date, limit: int) -> list[NoticeMail]:
        """Digest notices of days before `before` gathered into digests, one per member and
        day (at most `limit` digests); a digest's id is its first notice's.

        A notice already gathered is skipped by a concurrent run: its UPDATE re-checks
        `digest_id IS NULL` once the first one commits."""
        groups = (
            select(Notice.member_id, Notice.day, func.min(Notice.id).label("first_id"))
            .where(*_waiting_for_digest(before))
            .group_by(Notice.member_id, Notice.day)
            .order_by(Notice.day, Notice.member_id)
            .limit(limit)
            .subquery()
        )
        statement = (
            update(Notice)
            .where(
                Notice.member_id == groups.c.member_id,
                Notice.day == groups.c.day,
                *_waiting_for_digest(before),
            )
            .values(digest_id=groups.c.first_id, updated_at=func.now())
            .returning(Notice.id)
        )
        ids = (await self.session.scalars(statement, execution_options=NO_SYNC)).all()
        return await self.mails(list(ids))

    async def mails(self, notice_ids: Collection[int]) -> list[NoticeMail]:
        """What the mails of these notices say, by notice id."""
        if not notice_ids:
            return []
        statement = (
            select(
                Notice.id.label("notice_id"),
                Notice.kind,
                Notice.member_id,
                Member.email,
                Member.name,
                func.coalesce(Borrow.book_id, Hold.book_id).label("book_id"),
                func.coalesce(Borrow.book_title, Hold.book_title).label("book_title"),
                Notice.deadline,
                Notice.via_digest,
                Notice.digest_id,
            )
            .join(Member, Member.id == Notice.member_id)
            .outerjoin(Borrow, and_(Borrow.id == Notice.subject_id, Notice.kind.in_(LOAN_KINDS)))
            .outerjoin(Hold, and_(Hold.id == Notice.subject_id, Notice.kind.in_(HOLD_KINDS)))
            .where(Notice.id.in_(notice_ids))
            .order_by(Notice.id)
        )
        return [NoticeMail(**row._mapping) for row in await self.session.execute(statement)]

    async def existing(self, *, notice_ids: Collection[int]) -> set[int]:
        found = await self.session.scalars(select(Notice.id).where(Notice.id.in_(notice_ids)))
        return set(found.all())

    async def record_sent(self, *, notice_ids: Collection[int], attempt: int) -> None:
        """Sent by attempt `attempt`; a repeat changes nothing."""
        await self.session.execute(
            update(Notice)
            .where(Notice.id.in_(notice_ids), Notice.status != NoticeStatus.SENT)
            .values(
                status=NoticeStatus.SENT,
                sent_at=func.now(),
                attempts=func.greatest(Notice.attempts, attempt),
                updated_at=func.now(),
            ),
            execution_options=NO_SYNC,
        )

    async def record_failed(
        self, *, notice_ids: Collection[int], attempt: int, error: str, final: bool
    ) -> None:
        """Attempt `attempt` failed; a report older than the last one recorded, or one for
        a notice sent meanwhile, changes nothing."""
        await self.session.execute(
            update(Notice)
            .where(
                Notice.id.in_(notice_ids),
                Notice.status != NoticeStatus.SENT,
                Notice.attempts <= attempt,
            )
            .values(
                status=NoticeStatus.FAILED if final else NoticeStatus.RETRYING,
                attempts=attempt,
                last_error=error,
                updated_at=func.now(),
            ),
            execution_options=NO_SYNC,
        )

    async def get_many(self, *, notice_ids: Collection[int]) -> list[Notice]:
        statement = (
            select(Notice)
            .where(Notice.id.in_(notice_ids))
            .order_by(Notice.id)
            .execution_options(populate_existing=True)
        )
        return list((await self.session.scalars(statement)).all())

    async def page(
        self, *, member_id: int | None, status: NoticeStatus | None, limit: int, offset: int
    ) -> tuple[list[Notice], int]:
        """Newest first, and how many match."""
        conditions = _filters(member_id, status)
        statement = (
            select(Notice).where(*conditions).order_by(Notice.id.desc()).limit(limit).offset(offset)
        )
        total = await self.session.scalar(
            select(func.count()).select_from(Notice).where(*conditions)
        )
        return list((await self.session.scalars(statement)).all()), int(total or 0)


def _waiting_for_digest(before: date) -> list[ColumnElement[bool]]:
    return [Notice.via_digest.is_(True), Notice.digest_id.is_(None), Notice.day < before]


def _filters(member_id: int | None, status: NoticeStatus | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if member_id is not None:
        conditions.append(Notice.member_id == member_id)
    if status is not None:
        conditions.append(Notice.status == status)
    return conditions
