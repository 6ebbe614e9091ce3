"""All SQL about the circulation rules: member categories and lending policies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.models import Member, MemberCategory
from orders.lending.repository import NO_SYNC


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
        """Delete the category if no member (deleted ones included) has it.

        The row is locked first: a member being given the category meanwhile holds a KEY
        SHARE lock on it (its foreign key), so the two cannot both succeed.
        """
        locked = select(MemberCategory.code).where(MemberCategory.code == code).with_for_update()
        if await self.session.scalar(locked) is None:
            return False
        statement = (
            delete(MemberCategory)
            .where(MemberCategory.code == code, ~exists().where(Member.category == code))
            .returning(MemberCategory.code)
        )
        return await self.session.scalar(statement, execution_options=NO_SYNC) is not None
