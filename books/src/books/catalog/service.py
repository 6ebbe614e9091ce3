"""Catalog rules: what may be created, changed, listed and removed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from books.catalog.models import Book
from books.catalog.repository import BookRepository
from books.catalog.schemas import BookCreate, BookListQuery, BookUpdate
from books.db import SessionDep
from books.errors import BookNotFound
from books.metrics import BOOKS_CREATED, BOOKS_DELETED
from servicekit.database import after_commit


class CatalogService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.books = BookRepository(session)

    async def create_book(self, *, data: BookCreate, image: dict[str, str] | None = None) -> Book:
        values = data.column_values()
        if image is not None:
            values["image"] = image
        book = await self.books.add(values)
        after_commit(self.session, BOOKS_CREATED.inc)
        return book

    async def get_book(self, *, book_id: int) -> Book:
        book = await self.books.get_active(book_id=book_id)
        if book is None:
            raise BookNotFound(book_id)
        return book

    async def list_books(self, *, query: BookListQuery) -> tuple[list[Book], int]:
        books = await self.books.list_active(query=query)
        total = await self.books.count_active(query=query)
        return books, total

    async def update_book(self, *, book_id: int, changes: BookUpdate) -> Book:
        book = await self.books.update_active(book_id=book_id, values=changes.changes())
        if book is None:
            raise BookNotFound(book_id)
        return book

    async def delete_book(self, *, book_id: int) -> None:
        if not await self.books.deactivate(book_id=book_id):
            raise BookNotFound(book_id)
        after_commit(self.session, BOOKS_DELETED.inc)


async def get_catalog_service(session: SessionDep) -> CatalogService:
    return CatalogService(session)


CatalogServiceDep = Annotated[CatalogService, Depends(get_catalog_service)]
