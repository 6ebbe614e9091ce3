"""Catalog rules: what may be created, changed, listed and removed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from books.catalog.models import Book
from books.catalog.reads import BookReads
from books.catalog.repository import BookRepository
from books.catalog.schemas import BookCreate, BookListQuery, BookRead, BookUpdate
from books.db import SessionDep
from books.errors import BookNotFound, CopiesOnLoan, UnknownItemType
from books.metrics import BOOKS_CREATED, BOOKS_DELETED
from servicekit.database import after_commit, violates_foreign_key
from servicekit.pagination import encode_cursor


@contextmanager
def known_format(code: str | None) -> Iterator[None]:
    """A write naming an item type that does not exist (or was deleted meanwhile) is a
    422: the foreign key decides, so no check-then-write race."""
    try:
        yield
    except IntegrityError as exc:
        if violates_foreign_key(exc, FORMAT_FKEY):
            raise UnknownItemType(str(code)) from exc
        raise


FORMAT_FKEY = "books_format_fkey"


class CatalogService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.books = BookRepository(session)

    async def create_book(self, *, data: BookCreate, image: dict[str, str] | None = None) -> Book:
        values = data.column_values()
        if image is not None:
            values["image"] = image
        with known_format(data.format):
            book = await self.books.add(values)
        after_commit(self.session, BOOKS_CREATED.inc)
        return book

    async def update_book(self, *, book_id: int, changes: BookUpdate) -> Book:
        with known_format(changes.format):
            return await self._update_book(book_id=book_id, changes=changes)

    async def _update_book(self, *, book_id: int, changes: BookUpdate) -> Book:
        if changes.resizes_copies:
            return await self._update_resizing(
                book_id=book_id, values=changes.changes(), copies_total=changes.copies_total
            )
        book = await self.books.update_active(book_id=book_id, values=changes.changes())
        if book is None:
            raise BookNotFound(book_id)
        return book

    async def _update_resizing(
        self, *, book_id: int, values: dict[str, object], copies_total: int | None
    ) -> Book:
        """Resize the copies in one conditional UPDATE; when it matches nothing, say why."""
        update = self.books.update_active_resizing
        book = await update(book_id=book_id, values=values, copies_total=copies_total)
        if book is not None:
            return book
        copies = await self.books.lock_copies(book_id=book_id)
        if copies is None:
            raise BookNotFound(book_id)
        out = copies.on_loan
        if out > 0 and (copies_total is None or copies_total < out):
            raise CopiesOnLoan(book_id=book_id, out=out, wanted=copies_total)
        # Copies came back between the refused UPDATE and the lock; the row is locked now,
        # so the same UPDATE succeeds.
        book = await update(book_id=book_id, values=values, copies_total=copies_total)
        assert book is not None
        return book

    async def delete_book(self, *, book_id: int) -> None:
        if not await self.books.deactivate(book_id=book_id):
            raise BookNotFound(book_id)
        after_commit(self.session, BOOKS_DELETED.inc)


@dataclass(frozen=True)
class BooksPage:
    books: list[BookRead]
    total: int
    # The cursor of the next page, when this page was asked by cursor and is not the last.
    after: str | None


class CatalogReader:
    """What visitors read, on the read pool: no session, no transaction, no ORM objects."""

    def __init__(self, books: BookReads) -> None:
        self.books = books

    async def get_book(self, *, book_id: int) -> BookRead:
        row = await self.books.active_book(book_id=book_id)
        if row is None:
            raise BookNotFound(book_id)
        return BookRead.model_validate(row)

    async def list_books(self, *, query: BookListQuery) -> BooksPage:
        rows, total = await self.books.page(query=query)
        books = [BookRead.model_validate(row) for row in rows[: query.limit]]
        # A page by cursor reads one book more than it shows: whether there is a next page.
        more = query.after is not None and len(rows) > query.limit
        after = encode_cursor(books[-1].created_at, books[-1].id) if more else None
        return BooksPage(books=books, total=total, after=after)


async def get_catalog_service(session: SessionDep) -> CatalogService:
    return CatalogService(session)


def catalog_reader(request: Request) -> CatalogReader:
    """The reader of the hot reads, by a plain call rather than a dependency: each
    dependency FastAPI solves costs a request some 80,000 instructions, 6% of a GET by id
    (callgrind; README, Benchmarks)."""
    return CatalogReader(BookReads(request.app.state.reads))


CatalogServiceDep = Annotated[CatalogService, Depends(get_catalog_service)]
