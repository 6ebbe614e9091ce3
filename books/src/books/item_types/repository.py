"""All SQL about item types."""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from books.catalog.models import Book, ItemType


class ItemTypeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self) -> list[ItemType]:
        return list((await self.session.scalars(select(ItemType).order_by(ItemType.code))).all())

    async def add(self, *, code: str, name: str) -> ItemType | None:
        """The new item type, or None when the code is taken."""
        statement = (
            pg_insert(ItemType)
            .values(code=code, name=name)
            .on_conflict_do_nothing(index_elements=[ItemType.code])
            .returning(ItemType)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def delete_unused(self, *, code: str) -> bool:
        """Delete the item type if no book has it; False when missing or in use.

        FOR UPDATE on the row first: a book being given this format meanwhile holds a
        KEY SHARE lock on it (its foreign key), so the two cannot both succeed.
        """
        locked = select(ItemType.code).where(ItemType.code == code).with_for_update()
        if await self.session.scalar(locked) is None:
            return False
        statement = (
            delete(ItemType)
            .where(ItemType.code == code, ~exists().where(Book.format == code))
            .returning(ItemType.code)
        )
        return await self.session.scalar(statement) is not None

    async def exists(self, *, code: str) -> bool:
        return bool(await self.session.scalar(select(exists().where(ItemType.code == code))))
