"""Item type rules: codes are unique, and one in use by a book cannot be deleted."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from books.catalog.models import ItemType
from books.db import SessionDep
from books.errors import DefaultItemType, ItemTypeExists, ItemTypeInUse, ItemTypeNotFound
from books.item_types.repository import ItemTypeRepository
from books.item_types.schemas import ItemTypeCreate

# What a book is when created without a format (the column's default): it always exists.
DEFAULT_FORMAT = "book"


class ItemTypeService:
    def __init__(self, repository: ItemTypeRepository) -> None:
        self.item_types = repository

    async def list_item_types(self) -> list[ItemType]:
        return await self.item_types.list()

    async def create(self, *, data: ItemTypeCreate) -> ItemType:
        item_type = await self.item_types.add(code=data.code, name=data.name)
        if item_type is None:
            raise ItemTypeExists(data.code)
        return item_type

    async def delete(self, *, code: str) -> None:
        if code == DEFAULT_FORMAT:
            raise DefaultItemType(code)
        if await self.item_types.delete_unused(code=code):
            return
        if await self.item_types.exists(code=code):
            raise ItemTypeInUse(code)
        raise ItemTypeNotFound(code)


async def get_item_type_service(session: SessionDep) -> ItemTypeService:
    return ItemTypeService(ItemTypeRepository(session))


ItemTypeServiceDep = Annotated[ItemTypeService, Depends(get_item_type_service)]
