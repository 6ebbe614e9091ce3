"""All SQL about the circulation rules: member categories and lending policies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    column,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from orders.lending.models import (
    Borrow,
    BorrowStatus,
    ClosedDay,
    Closing,
    ClosingStatus,
    Hold,
    HoldStatus,
    Member,
    MemberCategory,
    Policy,
    PolicyAction,
    PolicyChange,
)
from orders.lending.repository import (
    MOST_SPECIFIC_FIRST,
    NO_SYNC,
    category_of,
    due_date,
    policy_match,
)


class CategoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self) -> list[MemberCategory]:
        statement = select(MemberCategory).order_by(MemberCategory.code)
        return list((await self.session.scalars(statement)).all())

    async def get(self, *, code: str) -> MemberCategory | None:
        return await self.session.get(MemberCategory, code)

    async def add(self, values: dict[str, Any]) -> MemberCategory | None:
        """The new category, or None when the code is taken."""
        statement = (
            pg_insert(MemberCategory)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[MemberCategory.code])
            .returning(MemberCategory)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def update(self, *, code: str, values: dict[str, Any]) -> MemberCategory | None:
        statement = (
            update(MemberCategory)
            .where(MemberCategory.code == code)
            .values(**values, updated_at=func.now())
            .returning(MemberCategory)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def delete_unused(self, *, code: str) -> bool:
        """Delete the category if no member (deleted ones included) or policy names it.

        The row is locked first: a member being given the category meanwhile holds a KEY
        SHARE lock on it (its foreign key), so the two cannot both succeed.
        """
        locked = select(MemberCategory.code).where(MemberCategory.code == code).with_for_update()
        if await self.session.scalar(locked) is None:
            return False
        statement = (
            delete(MemberCategory)
            .where(
                MemberCategory.code == code,
                ~exists().where(Member.category == code),
                ~exists().where(Policy.member_category == code),
            )
            .returning(MemberCategory.code)
        )
        return await self.session.scalar(statement, execution_options=NO_SYNC) is not None


class PolicyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self) -> list[Policy]:
        """Most specific first, as the resolver ranks them."""
        statement = select(Policy).order_by(*MOST_SPECIFIC_FIRST, Policy.id)
        return list((await self.session.scalars(statement)).all())

    async def get(self, *, policy_id: int, lock: bool = False) -> Policy | None:
        statement = select(Policy).where(Policy.id == policy_id)
        if lock:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def add(self, values: dict[str, Any]) -> Policy | None:
        """The new policy, or None when a policy has the same match."""
        statement = (
            pg_insert(Policy)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Policy.member_category, Policy.item_type])
            .returning(Policy)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def replace(self, *, policy_id: int, values: dict[str, Any]) -> Policy | None:
        statement = (
            update(Policy)
            .where(Policy.id == policy_id)
            .values(**values, updated_at=func.now())
            .returning(Policy)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def delete(self, *, policy_id: int) -> bool:
        """Delete a policy but the default; False when missing or the default."""
        statement = (
            delete(Policy)
            .where(
                Policy.id == policy_id,
                or_(Policy.member_category.is_not(None), Policy.item_type.is_not(None)),
            )
            .returning(Policy.id)
        )
        return await self.session.scalar(statement, execution_options=NO_SYNC) is not None

    async def matching(self, *, member_category: str, item_type: str) -> Sequence[Policy]:
        """The policies that match, the one that applies first (see `policy_match`): one
        statement over a table of a few rows, four of them at most."""
        statement = policy_match(member_category, item_type)
        return (await self.session.scalars(statement)).all()

    async def applying_to(self, *, member_id: int, item_type: str) -> Policy | None:
        """The policy that applies to a member (their category read in the same
        statement) and an item type."""
        statement = policy_match(category_of(member_id), item_type).limit(1)
        policy: Policy | None = await self.session.scalar(statement)
        return policy


# servicekit's table of the keys (see servicekit.api_keys), for a key's name.
_API_KEYS = table("api_keys", column("id"), column("name"))


class PolicyChangeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        *,
        policy_id: int,
        action: PolicyAction,
        api_key_id: int,
        api_key_prefix: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        """Keep a change in the same transaction as the change itself."""
        name = select(_API_KEYS.c.name).where(_API_KEYS.c.id == api_key_id)
        await self.session.execute(
            pg_insert(PolicyChange).values(
                policy_id=policy_id,
                action=action,
                api_key_id=api_key_id,
                api_key_prefix=api_key_prefix,
                api_key_name=name.scalar_subquery(),
                before=before,
                after=after,
            )
        )

    async def list(self, *, policy_id: int | None, limit: int, offset: int) -> list[PolicyChange]:
        statement = (
            select(PolicyChange)
            .where(*_change_filters(policy_id))
            .order_by(PolicyChange.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list((await self.session.scalars(statement)).all())

    async def count(self, *, policy_id: int | None) -> int:
        total = await self.session.scalar(
            select(func.count()).select_from(PolicyChange).where(*_change_filters(policy_id))
        )
        return int(total or 0)


def _change_filters(policy_id: int | None) -> list[Any]:
    return [] if policy_id is None else [PolicyChange.policy_id == policy_id]


class ClosedDayRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self, *, since: date | None) -> Sequence[ClosedDay]:
        statement = select(ClosedDay).order_by(ClosedDay.day)
        if since is not None:
            statement = statement.where(ClosedDay.day >= since)
        return (await self.session.scalars(statement)).all()

    async def between(self, *, first: date, last: date) -> set[date]:
        """The closed days from `first` to `last`, both included."""
        statement = select(ClosedDay.day).where(ClosedDay.day.between(first, last))
        return set((await self.session.scalars(statement)).all())

    async def add(self, *, day: date, reason: str) -> ClosedDay | None:
        """The new closed day, or None when it is closed already."""
        statement = (
            pg_insert(ClosedDay)
            .values(day=day, reason=reason)
            .on_conflict_do_nothing(index_elements=[ClosedDay.day])
            .returning(ClosedDay)
        )
        return (await self.session.scalars(statement, execution_options=NO_SYNC)).one_or_none()

    async def delete(self, *, day: date) -> bool:
        statement = delete(ClosedDay).where(ClosedDay.day == day).returning(ClosedDay.day)
        return await self.session.scalar(statement, execution_options=NO_SYNC) is not None


def _utc_midnight(day: Any) -> Any:
    """The instant a UTC date starts, for a range over an indexed timestamp column."""
    return func.timezone("UTC", func.cast(day, TIMESTAMP()))


class ClosingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *, first_day: date, last_day: date, reason: str) -> Closing:
        """The closing, its days closed (those closed already stay as they were)."""
        days = func.generate_series(first_day, last_day, timedelta(days=1)).column_valued("day")
        await self.session.execute(
            pg_insert(ClosedDay)
            .from_select(
                ["day", "reason"],
                select(func.cast(days, Date), literal(reason)),
            )
            .on_conflict_do_nothing(index_elements=[ClosedDay.day])
        )
        closing = Closing(first_day=first_day, last_day=last_day, reason=reason)
        self.session.add(closing)
        await self.session.flush()
        return closing

    async def get(self, *, closing_id: int, lock: bool = False) -> Closing | None:
        statement = select(Closing).where(Closing.id == closing_id)
        if lock:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return await self.session.scalar(statement)

    async def list(self, *, limit: int, offset: int) -> Sequence[Closing]:
        statement = select(Closing).order_by(Closing.id.desc()).limit(limit).offset(offset)
        return (await self.session.scalars(statement)).all()

    async def count(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(Closing)) or 0)

    async def move_loans(self, closing: Closing, *, limit: int) -> int:
        """Active loans due on the closing's days: due the next open day."""
        active = Borrow.status == BorrowStatus.ACTIVE
        return await self._move(Borrow, Borrow.due_at, active, closing, limit=limit)

    async def move_pickups(self, closing: Closing, *, limit: int) -> int:
        """Ready holds whose pickup deadline falls on the closing's days: the next open day."""
        ready = Hold.status == HoldStatus.READY
        return await self._move(Hold, Hold.pickup_by, ready, closing, limit=limit)

    async def _move(
        self,
        model: type[Borrow] | type[Hold],
        deadline: InstrumentedAttribute[datetime | None],
        state: ColumnElement[bool],
        closing: Closing,
        *,
        limit: int,
    ) -> int:
        """Rows in `state` whose `deadline` falls on the closing's days: the same time on
        the next open day; at most `limit`, along the partial index of `deadline`."""
        due = (
            select(model.id)
            .where(
                state,
                deadline >= _utc_midnight(closing.first_day),
                deadline < _utc_midnight(closing.last_day + timedelta(days=1)),
            )
            .order_by(deadline, model.id)
            .limit(limit)
            .with_for_update()
        )
        moved = await self.session.execute(
            update(model)
            .where(model.id.in_(due.scalar_subquery()))
            .values({deadline: due_date(deadline, timedelta(0)), model.updated_at: func.now()})
            .returning(model.id),
            execution_options=NO_SYNC,
        )
        return len(moved.all())

    async def count_moved(self, closing: Closing, *, loans: int, holds: int, done: bool) -> None:
        values: dict[str, Any] = {
            "loans_moved": Closing.loans_moved + loans,
            "holds_moved": Closing.holds_moved + holds,
        }
        if done:
            values |= {"status": ClosingStatus.DONE, "finished_at": func.now()}
        await self.session.execute(
            update(Closing).where(Closing.id == closing.id).values(**values),
            execution_options=NO_SYNC,
        )
        await self.session.refresh(closing)
