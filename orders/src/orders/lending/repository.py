"""All SQL about members, loans, holds and notices.

Every change of status is one conditional UPDATE (`… WHERE status IN (allowed)`), as
orders' `change_status`: of two racing changes the second sees the first's result.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.models import (
    Borrow,
    BorrowStatus,
    Hold,
    HoldStatus,
    LedgerEntry,
    LedgerKind,
    Member,
    MemberCategory,
    MemberStatus,
    Notice,
    NoticeKind,
    NoticeStatus,
    Policy,
)
from orders.saga import RedrivePolicy

OPEN_BORROW = (BorrowStatus.PENDING, BorrowStatus.ACTIVE)
OPEN_HOLD = (HoldStatus.WAITING, HoldStatus.SUSPENDED, HoldStatus.READY)
# A book's queue: the holds waiting for a copy, the suspended ones keeping their place.
QUEUED = (HoldStatus.WAITING, HoldStatus.SUSPENDED)
# Rows returned by an UPDATE replace what the session already holds of them.
NO_SYNC = {"synchronize_session": False, "populate_existing": True}
# The partial unique indexes' predicates, as literals: PostgreSQL matches `ON CONFLICT …
# WHERE` to an index only by its text, and psycopg's prepared statements (from the fifth
# run of a statement) would turn bound values into parameters it cannot match.
_OPEN_BORROW_PREDICATE = text("status IN ('pending', 'active')")
_OPEN_HOLD_PREDICATE = text("status IN ('waiting', 'suspended', 'ready')")
# The advisory-lock key space of books' hold queues (the second key: a hash of the book id;
# two-key locks never meet the relay's one-key lock).
QUEUE_LOCK_SPACE = 17


def policy_match(
    member_category: SQLColumnExpression[str] | str, item_type: SQLColumnExpression[str] | str
) -> Select[Policy]:
    """The lending policies matching a member category and an item type, the one that
    applies first: both sides, then the category alone, then the item type alone, then
    the default (any, any). The one statement of the resolution rule, which the resolver
    runs as it is and the statements that set due dates and pickup windows embed."""
    return (
        select(Policy)
        .where(
            or_(Policy.member_category == member_category, Policy.member_category.is_(None)),
            or_(Policy.item_type == item_type, Policy.item_type.is_(None)),
        )
        .order_by(*MOST_SPECIFIC_FIRST)
    )


# Both sides set, then the category alone, then the item type alone, then the default.
MOST_SPECIFIC_FIRST = (Policy.member_category.is_(None).asc(), Policy.item_type.is_(None).asc())


def category_of(member_id: SQLColumnExpression[int] | int) -> ColumnElement[str]:
    # Correlated to the statement's loan or hold however deep it is embedded.
    return (
        select(Member.category)
        .where(Member.id == member_id)
        .correlate_except(Member)
        .scalar_subquery()
    )


def policy_value(
    column: SQLColumnExpression[int] | SQLColumnExpression[int | None],
    *,
    member_id: SQLColumnExpression[int],
    item_type: SQLColumnExpression[str],
) -> ColumnElement[Any]:
    """`column` of the policy that applies to a row's member and item type, for a
    statement that sets a due date or a pickup deadline in place."""
    return (
        policy_match(category_of(member_id), item_type)
        .with_only_columns(column)
        .limit(1)
        .scalar_subquery()
    )


def policy_days(
    column: SQLColumnExpression[int] | SQLColumnExpression[int | None],
    *,
    member_id: SQLColumnExpression[int],
    item_type: SQLColumnExpression[str],
) -> ColumnElement[Any]:
    """`column` days of the policy that applies, as an interval (see `policy_value`)."""
    return func.make_interval(
        0, 0, 0, policy_value(column, member_id=member_id, item_type=item_type)
    )


@dataclass(frozen=True)
class Standing:
    """A member's overdue loans now, and the block thresholds of their category."""

    overdue: int
    max_overdue: int
    max_balance: Decimal
    # Loans still out after their final overdue notice, and whether that blocks.
    past_final_notice: int
    block_after_final_notice: bool


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> Member | None:
        """The new member, or None when a member already has this email (any case)."""
        statement = (
            pg_insert(Member)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=[func.lower(Member.email)], index_where=Member.deleted_at.is_(None)
            )
            .returning(Member)
        )
        member = (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()
        return await self._with_loan_limit(member)

    async def _with_loan_limit(self, member: Member | None) -> Member | None:
        """RETURNING leaves out the limit worked out from the category: load it."""
        if member is not None:
            await self.session.refresh(member, attribute_names=["loan_limit"])
        return member

    async def get(self, *, member_id: int) -> Member | None:
        return await self.session.scalar(
            select(Member).where(Member.id == member_id, Member.deleted_at.is_(None))
        )

    async def email_taken(self, *, email: str, other_than: int) -> bool:
        taken = await self.session.scalar(
            select(
                exists().where(
                    func.lower(Member.email) == email.lower(),
                    Member.deleted_at.is_(None),
                    Member.id != other_than,
                )
            )
        )
        return bool(taken)

    async def list(
        self, *, limit: int, offset: int, status: MemberStatus | None, q: str | None
    ) -> list[Member]:
        statement = (
            select(Member)
            .where(*_member_filters(status, q))
            .order_by(Member.created_at.desc(), Member.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list((await self.session.scalars(statement)).all())

    async def count(self, *, status: MemberStatus | None, q: str | None) -> int:
        total = await self.session.scalar(
            select(func.count()).select_from(Member).where(*_member_filters(status, q))
        )
        return int(total or 0)

    async def update(self, *, member_id: int, values: dict[str, Any]) -> Member | None:
        statement = (
            update(Member)
            .where(Member.id == member_id, Member.deleted_at.is_(None))
            .values(**values, updated_at=func.now())
            .returning(Member)
        )
        member = (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()
        return await self._with_loan_limit(member)

    async def delete(self, *, member_id: int) -> bool:
        """Soft-delete a member with nothing out; False if they have loans out (or are gone)."""
        statement = (
            update(Member)
            .where(Member.id == member_id, Member.deleted_at.is_(None), Member.loans_out == 0)
            .values(deleted_at=func.now(), updated_at=func.now())
            .returning(Member.id)
        )
        return (await self.session.scalar(statement, execution_options=NO_SYNC)) is not None

    async def take_loan_slot(self, *, member_id: int) -> bool:
        """Count one more loan for an active member below their limit; False otherwise.

        The single statement that enforces the loan limit: concurrent borrows of one
        member queue on the row, and each sees the count the previous one left.
        """
        statement = (
            update(Member)
            .where(
                Member.id == member_id,
                Member.deleted_at.is_(None),
                Member.status == MemberStatus.ACTIVE,
                Member.loans_out < Member.loan_limit,
            )
            .values(loans_out=Member.loans_out + 1)
            .returning(Member.id)
        )
        return (await self.session.scalar(statement, execution_options=NO_SYNC)) is not None

    async def category(self, *, member_id: int) -> str | None:
        """The member's category, deleted members' too (their loans still run out)."""
        return await self.session.scalar(select(Member.category).where(Member.id == member_id))

    async def categories(self, *, member_ids: Collection[int]) -> dict[int, str]:
        """The categories of members, deleted members' too."""
        rows = await self.session.execute(
            select(Member.id, Member.category).where(Member.id.in_(member_ids))
        )
        return {member_id: category for member_id, category in rows.all()}

    async def standing(self, *, member: Member) -> Standing:
        """How many of the member's loans are overdue now, and their category's limits."""
        overdue = (
            select(func.count())
            .select_from(Borrow)
            .where(
                Borrow.member_id == member.id,
                Borrow.status == BorrowStatus.ACTIVE,
                Borrow.due_at < func.now(),
            )
            .scalar_subquery()
        )
        # A final notice not delivered for good (failed) does not count: the member may
        # never have read it.
        past_final_notice = (
            select(func.count())
            .select_from(Borrow)
            .where(
                Borrow.member_id == member.id,
                Borrow.status == BorrowStatus.ACTIVE,
                exists().where(
                    Notice.kind == NoticeKind.OVERDUE_3,
                    Notice.subject_id == Borrow.id,
                    Notice.deadline == Borrow.due_at,
                    Notice.status != NoticeStatus.FAILED,
                ),
            )
            .scalar_subquery()
        )
        limits = select(
            MemberCategory.max_overdue_loans,
            MemberCategory.max_balance,
            MemberCategory.block_after_final_notice,
        ).where(MemberCategory.code == member.category)
        allowed_overdue, max_balance, block_after_final_notice, current, past_final = (
            await self.session.execute(limits.add_columns(overdue, past_final_notice))
        ).one()
        return Standing(
            overdue=int(current),
            max_overdue=int(allowed_overdue),
            max_balance=max_balance,
            past_final_notice=int(past_final),
            block_after_final_notice=block_after_final_notice,
        )

    async def give_back_loan_slots(self, *, slots: Mapping[int, int]) -> None:
        """Members' loan slots (member id: how many): one statement run for each, sent
        together."""
        table = Member.metadata.tables["members"]
        members = table.c
        await self.session.execute(
            update(table)
            .where(members.id == bindparam("member"), members.loans_out >= bindparam("slots"))
            .values(loans_out=members.loans_out - bindparam("slots")),
            [{"member": member, "slots": count} for member, count in slots.items()],
        )

    async def lock(self, *, member_id: int) -> None:
        """Lock the member's row until commit: what is counted against one of their limits
        after it cannot change under the count (a concurrent request waits, then counts)."""
        await self.session.execute(
            select(Member.id).where(Member.id == member_id).with_for_update()
        )

    async def give_back_loan_slot(self, *, member_id: int) -> None:
        await self.session.execute(
            update(Member)
            .where(Member.id == member_id, Member.loans_out > 0)
            .values(loans_out=Member.loans_out - 1),
            execution_options=NO_SYNC,
        )


def _member_filters(status: MemberStatus | None, q: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Member.deleted_at.is_(None)]
    if status is not None:
        conditions.append(Member.status == status)
    if q is not None:
        # The email exactly (its unique index), or a part of the name.
        conditions.append(
            or_(func.lower(Member.email) == q.lower(), Member.name.icontains(q, autoescape=True))
        )
    return conditions


class BorrowRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> Borrow | None:
        """The new borrow, or None when the member already has this book out or requested."""
        statement = (
            pg_insert(Borrow)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=[Borrow.member_id, Borrow.book_id],
                index_where=_OPEN_BORROW_PREDICATE,
            )
            .returning(Borrow)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def get(self, *, borrow_id: int, lock: bool = False) -> Borrow | None:
        statement = select(Borrow).where(Borrow.id == borrow_id)
        if lock:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def due_date_from_now(self, *, period: timedelta) -> datetime:
        """The due date a loan of `period` started now would get (closed days skipped)."""
        due = await self.session.scalar(select(due_date(func.now(), period)))
        assert isinstance(due, datetime)
        return due

    async def open_of_kind(self, *, member_id: int, item_type: str) -> int:
        """The member's loans out or requested of one item type."""
        total = await self.session.scalar(
            select(func.count())
            .select_from(Borrow)
            .where(
                Borrow.member_id == member_id,
                Borrow.status.in_(OPEN_BORROW),
                Borrow.item_type == item_type,
            )
        )
        return int(total or 0)

    async def has_open(self, *, member_id: int, book_id: int) -> bool:
        """Whether the member has the book out or requested."""
        found = await self.session.scalar(
            select(
                exists().where(
                    Borrow.member_id == member_id,
                    Borrow.book_id == book_id,
                    Borrow.status.in_(OPEN_BORROW),
                )
            )
        )
        return bool(found)

    async def stalled(self, *, policy: RedrivePolicy) -> list[Borrow]:
        """Pending borrows due a re-drive, oldest first, locked (`SKIP LOCKED`, as orders')."""
        statement = (
            select(Borrow)
            .where(
                Borrow.status == BorrowStatus.PENDING,
                *policy.due(
                    started_at=Borrow.requested_at,
                    redrives=Borrow.redrives,
                    redriven_at=Borrow.redriven_at,
                ),
            )
            .order_by(Borrow.requested_at, Borrow.id)
            .limit(policy.batch_size)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.scalars(statement)).all())

    async def declare_lost(self, *, limit: int) -> list[Borrow]:
        """Active loans overdue past their policy's `lost_after_days` become lost, longest
        overdue first, at most `limit`.

        The scan walks the index of loans out by due date, only below the shortest
        `lost_after_days` of any policy: loans overdue less than that are never read.
        """
        soonest = select(func.min(Policy.lost_after_days)).scalar_subquery()
        due = (
            select(Borrow.id)
            .where(
                Borrow.status == BorrowStatus.ACTIVE,
                Borrow.due_at < func.now() - func.make_interval(0, 0, 0, soonest),
                Borrow.due_at < func.now() - LOST_AFTER,
            )
            .order_by(Borrow.due_at, Borrow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(Borrow)
            .where(Borrow.id.in_(due.scalar_subquery()), Borrow.status == BorrowStatus.ACTIVE)
            .values(status=BorrowStatus.LOST, lost_at=func.now(), updated_at=func.now())
            .returning(Borrow)
        )
        return list((await self.session.scalars(statement, execution_options=NO_SYNC)).all())

    async def set_late_fees(self, *, fees: Mapping[int, Decimal]) -> None:
        """Borrows' late fees (borrow id: fee): one statement run for each, sent together."""
        table = Borrow.metadata.tables["borrows"]
        borrows = table.c
        await self.session.execute(
            update(table)
            .where(borrows.id == bindparam("borrow"))
            .values(late_fee=bindparam("fee"), updated_at=func.now()),
            [{"borrow": borrow_id, "fee": fee} for borrow_id, fee in fees.items()],
        )

    async def count_redrive(self, *, borrow_ids: Collection[int]) -> None:
        await self.session.execute(
            update(Borrow)
            .where(Borrow.id.in_(borrow_ids))
            .values(redrives=Borrow.redrives + 1, redriven_at=func.now()),
            execution_options=NO_SYNC,
        )

    async def change(
        self,
        *,
        borrow_id: int,
        allowed_from: Collection[BorrowStatus],
        values: dict[str, Any],
        where: Sequence[ColumnElement[bool]] = (),
    ) -> Borrow | None:
        """Apply `values` if the borrow's status is in `allowed_from` (and `where` holds)."""
        statement = (
            update(Borrow)
            .where(Borrow.id == borrow_id, Borrow.status.in_(allowed_from), *where)
            .values(**values, updated_at=func.now())
            .returning(Borrow)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()


def due_date(start: SQLColumnExpression[Any], period: Any) -> ColumnElement[Any]:
    """`start` + `period`, moved to the next open day when it falls on a closed one (the
    `next_open_day` function of migration 0014): every due date is set through this."""
    return func.next_open_day(start + period, type_=TIMESTAMP(timezone=True))


# How long overdue a loan is lost, as its policy sets it (NULL: never).
LOST_AFTER = policy_days(
    Policy.lost_after_days, member_id=Borrow.member_id, item_type=Borrow.item_type
)


def pickup_deadline(start: SQLColumnExpression[Any]) -> ColumnElement[Any]:
    """Until when a hold readied at `start` keeps its copy: its policy's
    `hold_pickup_days`, counting open days only (the `add_open_days` function of migration
    0017), in the statement that readies the hold."""
    days = policy_value(Policy.hold_pickup_days, member_id=Hold.member_id, item_type=Hold.item_type)
    return func.add_open_days(start, days, type_=TIMESTAMP(timezone=True))


# A loan's period, as its policy sets it, in the statement that starts the loan.
LOAN_PERIOD = policy_days(
    Policy.loan_period_days, member_id=Borrow.member_id, item_type=Borrow.item_type
)


class HoldRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> Hold | None:
        """The new hold, or None when the member already has an open hold on the book."""
        statement = (
            pg_insert(Hold)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=[Hold.member_id, Hold.book_id],
                index_where=_OPEN_HOLD_PREDICATE,
            )
            .returning(Hold)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def get(self, *, hold_id: int) -> Hold | None:
        return await self.session.scalar(select(Hold).where(Hold.id == hold_id))

    async def open_holds_of(self, *, member_id: int) -> list[Hold]:
        statement = select(Hold).where(Hold.member_id == member_id, Hold.status.in_(OPEN_HOLD))
        return list((await self.session.scalars(statement)).all())

    async def open_hold(self, *, member_id: int, book_id: int) -> Hold | None:
        return await self.session.scalar(
            select(Hold).where(
                Hold.member_id == member_id, Hold.book_id == book_id, Hold.status.in_(OPEN_HOLD)
            )
        )

    async def queue_of(self, *, book_id: int) -> tuple[list[datetime], int]:
        """The due dates of the book's loans out, and how many of its holds are ready."""
        due = select(Borrow.due_at).where(
            Borrow.book_id == book_id, Borrow.status == BorrowStatus.ACTIVE
        )
        ready = await self.session.scalar(
            select(func.count())
            .select_from(Hold)
            .where(Hold.book_id == book_id, Hold.status == HoldStatus.READY)
        )
        return [d for d in (await self.session.scalars(due)).all() if d is not None], int(
            ready or 0
        )

    async def place_in_queue(self, *, hold: Hold) -> tuple[int, int]:
        """The hold's position in its book's queue (1 = first; suspended holds keep their
        places), and how many holds ahead of it wait for a copy (suspended ones do not)."""
        ahead = (
            await self.session.execute(
                select(
                    func.count(),
                    func.count().filter(Hold.status == HoldStatus.WAITING),
                ).where(
                    Hold.book_id == hold.book_id,
                    Hold.status.in_(QUEUED),
                    Hold.queue_rank < hold.queue_rank,
                )
            )
        ).one()
        return int(ahead[0]) + 1, int(ahead[1])

    async def open_of_kind(self, *, member_id: int, item_type: str) -> int:
        """The member's open holds (waiting, suspended or ready) on books of one item type."""
        total = await self.session.scalar(
            select(func.count())
            .select_from(Hold)
            .where(
                Hold.member_id == member_id,
                Hold.status.in_(OPEN_HOLD),
                Hold.item_type == item_type,
            )
        )
        return int(total or 0)

    async def lock_queue(self, *, book_id: int) -> None:
        """Serialize the changes of a book's queue order with its hand-overs until commit: a
        copy handed over while staff reorder the queue goes by the order that commits."""
        await self.session.execute(
            select(func.pg_advisory_xact_lock(QUEUE_LOCK_SPACE, func.hashint8(book_id)))
        )

    async def queue(self, *, book_id: int, lock: bool = False) -> list[Hold]:
        """The book's queue (waiting and suspended holds), first in line first."""
        statement = (
            select(Hold)
            .where(Hold.book_id == book_id, Hold.status.in_(QUEUED))
            .order_by(Hold.queue_rank)
        )
        if lock:
            statement = statement.with_for_update()
        return list((await self.session.scalars(statement)).all())

    async def rerank(self, *, ranks: dict[int, int]) -> None:
        """Give each hold (id -> rank) its new rank, in one statement."""
        statement = (
            update(Hold)
            .where(Hold.id.in_(ranks))
            .values(queue_rank=case(ranks, value=Hold.id), updated_at=func.now())
            .returning(Hold)
        )
        (await self.session.scalars(statement, execution_options=NO_SYNC)).all()

    async def resume_due(self, *, day: date, limit: int) -> list[Hold]:
        """Suspended holds whose resume date has come wait again, soonest date first."""
        due = (
            select(Hold.id)
            .where(Hold.status == HoldStatus.SUSPENDED, Hold.suspended_until <= day)
            .order_by(Hold.suspended_until, Hold.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(Hold)
            .where(Hold.id.in_(due.scalar_subquery()), Hold.status == HoldStatus.SUSPENDED)
            .values(status=HoldStatus.WAITING, suspended_until=None, updated_at=func.now())
            .returning(Hold)
        )
        return list((await self.session.scalars(statement, execution_options=NO_SYNC)).all())

    async def others_waiting(self, *, book_id: int, member_id: int) -> bool:
        """Whether another member has an open hold on the book (a renewal would keep it)."""
        held = await self.session.scalar(
            select(
                exists().where(
                    Hold.book_id == book_id,
                    Hold.status.in_(OPEN_HOLD),
                    Hold.member_id != member_id,
                )
            )
        )
        return bool(held)

    async def change(
        self, *, hold_id: int, allowed_from: Collection[HoldStatus], values: dict[str, Any]
    ) -> Hold | None:
        statement = (
            update(Hold)
            .where(Hold.id == hold_id, Hold.status.in_(allowed_from))
            .values(**values, updated_at=func.now())
            .returning(Hold)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def handed(self, *, from_reference: str) -> Hold | None:
        return await self.session.scalar(select(Hold).where(Hold.copy_from == from_reference))

    async def take_first_waiting(self, *, book_id: int, from_reference: str) -> Hold | None:
        """Set the copy of `from_reference` aside for the first waiting hold of the book, in
        queue order; suspended holds are passed over.

        SKIP LOCKED: two copies handed over at once go to two different holds.
        """
        first = (
            select(Hold.id)
            .where(Hold.book_id == book_id, Hold.status == HoldStatus.WAITING)
            .order_by(Hold.queue_rank)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(Hold)
            .where(Hold.id == first)
            .values(
                status=HoldStatus.READY,
                copy_from=from_reference,
                ready_at=func.now(),
                pickup_by=pickup_deadline(func.now()),
                updated_at=func.now(),
            )
            .returning(Hold)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def expire_uncollected(self, *, limit: int) -> list[Hold]:
        """Ready holds past their pickup deadline become expired, oldest deadline first."""
        due = (
            select(Hold.id)
            .where(Hold.status == HoldStatus.READY, Hold.pickup_by < func.now())
            .order_by(Hold.pickup_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(Hold)
            .where(Hold.id.in_(due.scalar_subquery()))
            .values(status=HoldStatus.EXPIRED, closed_at=func.now(), updated_at=func.now())
            .returning(Hold)
        )
        return list((await self.session.scalars(statement, execution_options=NO_SYNC)).all())

    async def list(
        self,
        *,
        limit: int,
        offset: int,
        status: HoldStatus | None,
        member_id: int | None,
        book_id: int | None,
    ) -> list[Hold]:
        statement = (
            select(Hold)
            .where(*_hold_filters(status, member_id, book_id))
            .order_by(Hold.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list((await self.session.scalars(statement)).all())

    async def count(
        self, *, status: HoldStatus | None, member_id: int | None, book_id: int | None
    ) -> int:
        total = await self.session.scalar(
            select(func.count()).select_from(Hold).where(*_hold_filters(status, member_id, book_id))
        )
        return int(total or 0)


def _hold_filters(
    status: HoldStatus | None, member_id: int | None, book_id: int | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        conditions.append(Hold.status == status)
    if member_id is not None:
        conditions.append(Hold.member_id == member_id)
    if book_id is not None:
        conditions.append(Hold.book_id == book_id)
    return conditions


class LedgerRepository:
    """A member's charges and credits; the balance follows by trigger (migration 0013)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> LedgerEntry:
        entry = LedgerEntry(**values)
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Entries in one statement (the balance trigger runs for each row)."""
        await self.session.execute(insert(LedgerEntry), list(rows))

    async def loan_charge(self, *, borrow_id: int, kind: LedgerKind) -> Decimal | None:
        """What a loan was charged of `kind`, if it was."""
        return await self.session.scalar(
            select(LedgerEntry.amount).where(
                LedgerEntry.borrow_id == borrow_id, LedgerEntry.kind == kind
            )
        )

    async def lock_member(self, *, member_id: int) -> Member | None:
        """The member, row-locked until commit: credits to one member run one at a time,
        each seeing the balance the one before left (the balance's CHECK backs this up)."""
        return await self.session.scalar(
            select(Member)
            .where(Member.id == member_id, Member.deleted_at.is_(None))
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def page(
        self, *, member_id: int, limit: int, offset: int
    ) -> list[tuple[LedgerEntry, Decimal]]:
        """Newest first, each entry with the balance it left (a running sum, oldest first)."""
        running = func.sum(LedgerEntry.amount).over(order_by=LedgerEntry.id).label("balance_after")
        numbered = (
            select(LedgerEntry.id, running).where(LedgerEntry.member_id == member_id).subquery()
        )
        statement = (
            select(LedgerEntry, numbered.c.balance_after)
            .join(numbered, numbered.c.id == LedgerEntry.id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [(entry, balance) for entry, balance in (await self.session.execute(statement))]

    async def count(self, *, member_id: int) -> int:
        total = await self.session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.member_id == member_id)
        )
        return int(total or 0)
