"""Member category rules: codes are unique, and one that a member or a policy names stays."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.errors import CategoryExists, CategoryInUse, CategoryNotFound
from orders.lending.models import MemberCategory
from orders.lending.rule_repository import CategoryRepository
from orders.lending.rule_schemas import CategoryCreate, CategoryUpdate


class CategoryService:
    def __init__(self, session: AsyncSession) -> None:
        self.categories = CategoryRepository(session)

    async def list_categories(self) -> list[MemberCategory]:
        return await self.categories.list()

    async def get(self, *, code: str) -> MemberCategory:
        category = await self.categories.get(code=code)
        if category is None:
            raise CategoryNotFound(code)
        return category

    async def create(self, *, data: CategoryCreate) -> MemberCategory:
        category = await self.categories.add(data.values())
        if category is None:
            raise CategoryExists(data.code)
        return category

    async def update(self, *, code: str, changes: CategoryUpdate) -> MemberCategory:
        category = await self.categories.update(code=code, values=changes.changes())
        if category is None:
            raise CategoryNotFound(code)
        return category

    async def delete(self, *, code: str) -> None:
        if await self.categories.delete_unused(code=code):
            return
        await self.get(code=code)
        raise CategoryInUse(code)
