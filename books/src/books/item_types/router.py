"""HTTP layer of item types."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from books.catalog.schemas import ItemTypeCode
from books.http import BooksRoute, problem_responses, require_json
from books.item_types.schemas import ItemTypeCreate, ItemTypeRead
from books.item_types.service import ItemTypeServiceDep
from books.security import requires
from servicekit.api_keys import CATALOG_WRITE

router = APIRouter(prefix="/v1/item-types", tags=["item types"], route_class=BooksRoute)
CodePath = Annotated[ItemTypeCode, Path(description="The item type's code.")]


@router.get("", response_model=list[ItemTypeRead], responses=problem_responses())
async def list_item_types(service: ItemTypeServiceDep) -> list[ItemTypeRead]:
    """List the item types a book's `format` may take, by code."""
    return [ItemTypeRead.model_validate(t) for t in await service.list_item_types()]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemTypeRead,
    responses=problem_responses(400, 401, 403, 409, 415, 422),
    dependencies=[requires(CATALOG_WRITE), Depends(require_json)],
)
async def create_item_type(
    data: ItemTypeCreate, service: ItemTypeServiceDep, response: Response
) -> ItemTypeRead:
    """Add an item type (admin key); a code that exists is a 409."""
    item_type = await service.create(data=data)
    response.headers["Location"] = f"/v1/item-types/{item_type.code}"
    return ItemTypeRead.model_validate(item_type)


@router.delete(
    "/{code}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
    dependencies=[requires(CATALOG_WRITE)],
)
async def delete_item_type(code: CodePath, service: ItemTypeServiceDep) -> None:
    """Delete an item type (admin key); refused (409) while a book has it as its format."""
    await service.delete(code=code)
