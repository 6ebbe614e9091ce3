"""All SQL about books but the hot reads (`books.catalog.reads`)."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from books.catalog.models import Book


def _resize_copies(total: int | None) -> tuple[dict[str, Any], ColumnElement[bool]]:
    """SET values and WHERE condition that resize a book's copies to `total` in one
    UPDATE: the shelf moves by the same delta, and a total below the copies on loan
    matches no row. SET reads the row's values from before the UPDATE."""
    not_lendable = Book.copies_total.is_(None)
    if total is None:
        nothing_out = Book.copies_available == Book.copies_total
        return {"copies_total": None, "copies_available": None}, not_lendable | nothing_out
    on_loan = Book.copies_total - Book.copies_available
    available = case(
        (not_lendable, total), else_=Book.copies_available + (total - Book.copies_total)
    )
    return {"copies_total": total, "copies_available": available}, not_lendable | (on_loan <= total)


class Copies(NamedTuple):
    total: int | None
    available: int | None

    @property
    def on_loan(self) -> int:
        return 0 if self.total is None or self.available is None else self.total - self.available


class BookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> Book:
        book = Book(**values)
        self.session.add(book)
        await self.session.flush()
        await self.session.refresh(book)
        return book

    async def update_active(self, *, book_id: int, values: dict[str, Any]) -> Book | None:
        """Write only the given columns, so concurrent edits of other fields survive."""
        return await self._update_active(book_id=book_id, values=values)

    async def update_active_resizing(
        self, *, book_id: int, values: dict[str, Any], copies_total: int | None
    ) -> Book | None:
        """Like `update_active`, and set the copies to `copies_total`; None when the book is
        missing, inactive or has more copies on loan than the new total allows."""
        copies, fits = _resize_copies(copies_total)
        return await self._update_active(book_id=book_id, values=values | copies, where=fits)

    async def lock_copies(self, *, book_id: int) -> Copies | None:
        """The copies of an active book, its row locked until the transaction ends."""
        row = (
            await self.session.execute(
                select(Book.copies_total, Book.copies_available)
                .where(Book.id == book_id, Book.active)
                # Not FOR UPDATE: that waits for the KEY SHARE lock a checkout's ledger row
                # takes on the book (its foreign key) while the checkout then waits for
                # the row lock this transaction's refused UPDATE kept: a deadlock.
                .with_for_update(key_share=True)  # FOR NO KEY UPDATE
            )
        ).one_or_none()
        return None if row is None else Copies(total=row[0], available=row[1])

    async def _update_active(
        self, *, book_id: int, values: dict[str, Any], where: ColumnElement[bool] | None = None
    ) -> Book | None:
        conditions = [Book.id == book_id, Book.active] + ([] if where is None else [where])
        statement = (
            update(Book).where(*conditions).values(**values, updated_at=func.now()).returning(Book)
        )
        result = await self.session.execute(
            statement, execution_options={"synchronize_session": False}
        )
        return result.scalar_one_or_none()

    async def deactivate(self, *, book_id: int) -> bool:
        statement = (
            update(Book)
            .where(Book.id == book_id, Book.active)
            .values(active=False, updated_at=func.now())
            .returning(Book.id)
        )
        result = await self.session.execute(
            statement, execution_options={"synchronize_session": False}
        )
        return result.scalar_one_or_none() is not None

    async def replace_image(
        self, *, book_id: int, image: dict[str, str] | None
    ) -> tuple[Book, dict[str, Any] | None] | None:
        """Set the cover and return the book with the cover it had before, atomically."""
        previous = (
            select(Book.id, Book.image)
            .where(Book.id == book_id, Book.active)
            .with_for_update()
            .subquery()
        )
        statement = (
            update(Book)
            .where(Book.id == previous.c.id)
            .values(image=image, updated_at=func.now())
            .returning(Book, previous.c.image)
        )
        result = await self.session.execute(
            statement, execution_options={"synchronize_session": False}
        )
        row = result.one_or_none()
        return None if row is None else (row[0], row[1])
