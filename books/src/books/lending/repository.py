"""All SQL of the copy ledger and of the copies on books."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from books.catalog.models import Book
from books.lending.models import CopyLoan, LoanState


class Shelf(NamedTuple):
    active: bool
    copies_total: int | None


class CopyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def savepoint(self) -> AsyncSessionTransaction:
        return await self.session.begin_nested()

    async def claim(self, *, reference: str, book_id: int) -> bool:
        """Insert the reference's row as `out` unless the reference exists (waiting for an
        in-flight claim of it to commit or roll back) or the book does not; True if this
        call owns the reference."""
        book_exists = exists().where(Book.id == book_id)
        rows = select(literal(reference), literal(book_id), literal(LoanState.OUT.value)).where(
            book_exists
        )
        statement = (
            insert(CopyLoan)
            .from_select(["reference", "book_id", "state"], rows)
            .on_conflict_do_nothing(index_elements=[CopyLoan.reference])
            .returning(CopyLoan.reference)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def get(self, *, reference: str) -> CopyLoan | None:
        return await self.session.get(CopyLoan, reference)

    async def lock(self, *references: str) -> dict[str, CopyLoan]:
        """The rows of these references, locked in reference order: two transfers lock
        their rows in the same order, so they cannot deadlock."""
        statement = (
            select(CopyLoan)
            .where(CopyLoan.reference.in_(references))
            .order_by(CopyLoan.reference)
            .with_for_update()
        )
        loans = (await self.session.scalars(statement)).all()
        return {loan.reference: loan for loan in loans}

    async def take_copy(self, *, book_id: int) -> bool:
        statement = (
            update(Book)
            .where(Book.id == book_id, Book.active, Book.copies_available > 0)
            .values(copies_available=Book.copies_available - 1, updated_at=func.now())
            .returning(Book.id)
        )
        result = await self.session.execute(
            statement, execution_options={"synchronize_session": False}
        )
        return result.scalar_one_or_none() is not None

    async def give_back_copy(self, *, book_id: int) -> None:
        """Soft-deleted books take their copies back too."""
        await self.session.execute(
            update(Book)
            .where(Book.id == book_id)
            .values(copies_available=Book.copies_available + 1, updated_at=func.now()),
            execution_options={"synchronize_session": False},
        )

    async def shelf(self, *, book_id: int) -> Shelf | None:
        row = (
            await self.session.execute(
                select(Book.active, Book.copies_total).where(Book.id == book_id)
            )
        ).one_or_none()
        return None if row is None else Shelf(active=row.active, copies_total=row.copies_total)

    async def check_in(self, *, reference: str) -> int | None:
        """Mark the reference's copy as back; its book id, or None if it had no copy out."""
        statement = (
            update(CopyLoan)
            .where(CopyLoan.reference == reference, CopyLoan.state == LoanState.OUT)
            .values(state=LoanState.IN, updated_at=func.now())
            .returning(CopyLoan.book_id)
        )
        result = await self.session.execute(
            statement, execution_options={"synchronize_session": False}
        )
        return result.scalar_one_or_none()

    async def pass_on(self, *, loan: CopyLoan, to_reference: str) -> bool:
        """Hand `loan`'s copy to a new reference for the same book, off the shelf; False if
        that reference was claimed meanwhile."""
        statement = (
            insert(CopyLoan)
            .values(reference=to_reference, book_id=loan.book_id, state=LoanState.OUT)
            .on_conflict_do_nothing(index_elements=[CopyLoan.reference])
            .returning(CopyLoan.reference)
        )
        if (await self.session.execute(statement)).scalar_one_or_none() is None:
            return False
        await self.session.execute(
            update(CopyLoan)
            .where(CopyLoan.reference == loan.reference)
            .values(state=LoanState.PASSED, passed_to=to_reference, updated_at=func.now()),
            execution_options={"synchronize_session": False},
        )
        return True
