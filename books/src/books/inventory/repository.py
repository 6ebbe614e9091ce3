"""All SQL of the stock ledger and of stock levels on books."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Integer, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from books.catalog.models import Book
from books.inventory.models import StockMovement, StockReservation
from books.inventory.schemas import MovementKind, ReservationStatus, StockLine


class Take(Enum):
    TRACKED = "tracked"
    UNTRACKED = "untracked"
    REFUSED = "refused"


class StockLevel(NamedTuple):
    active: bool
    stock: int | None


# The SELECT sees the statement's snapshot, from before the UPDATE: a book is either
# tracked (then the UPDATE decides) or untracked (then only the SELECT looks at it).
_TAKE = text(
    """
    WITH taken AS (
        UPDATE books SET stock = stock - :quantity, updated_at = now()
        WHERE id = :book_id AND active AND stock >= :quantity
        RETURNING id
    )
    SELECT EXISTS (SELECT FROM taken) AS tracked,
           EXISTS (SELECT FROM books WHERE id = :book_id AND active AND stock IS NULL)
               AS untracked
    """
)


_NAME_MOVEMENTS = text(
    "SELECT set_config('books.stock_kind', :kind, true),"
    " set_config('books.stock_reference', :reference, true),"
    " set_config('books.stock_reason', :reason, true)"
)


class StockRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        *,
        reference: str,
        lines: Sequence[StockLine],
        status: ReservationStatus = ReservationStatus.RESERVED,
    ) -> bool:
        """Insert the reservation row unless the reference exists (waiting for an in-flight
        claim of it to commit or roll back); True if this call owns the reference."""
        statement = (
            insert(StockReservation)
            .values(
                reference=reference,
                status=status,
                lines=[line.model_dump() for line in lines],
            )
            .on_conflict_do_nothing(index_elements=[StockReservation.reference])
            .returning(StockReservation.reference)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def get(self, *, reference: str, lock: bool = False) -> StockReservation | None:
        statement = select(StockReservation).where(StockReservation.reference == reference)
        if lock:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def savepoint(self) -> AsyncSessionTransaction:
        return await self.session.begin_nested()

    async def take(self, *, book_id: int, quantity: int) -> Take:
        """Take `quantity` of a tracked book's stock, or check an untracked one: it exists
        and is active. One statement either way; an untracked book's row is neither
        written nor locked, so orders of a popular untracked book do not queue on it."""
        row = (await self.session.execute(_TAKE, {"book_id": book_id, "quantity": quantity})).one()
        if row.tracked:
            return Take.TRACKED
        return Take.UNTRACKED if row.untracked else Take.REFUSED

    async def give_back(self, *, book_id: int, quantity: int) -> None:
        """Soft-deleted books get their stock back too; untracked ones stay untracked."""
        statement = (
            update(Book)
            .where(Book.id == book_id, Book.stock.is_not(None))
            .values(stock=Book.stock + quantity, updated_at=func.now())
        )
        await self.session.execute(statement, execution_options={"synchronize_session": False})

    async def stock_levels(self, *, book_ids: Sequence[int]) -> dict[int, StockLevel]:
        rows = await self.session.execute(
            select(Book.id, Book.active, Book.stock).where(Book.id.in_(book_ids))
        )
        return {row.id: StockLevel(active=row.active, stock=row.stock) for row in rows}

    async def set_outcome(
        self,
        *,
        reference: str,
        status: ReservationStatus,
        shortages: list[dict[str, Any]] | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": func.now()}
        if shortages is not None:
            values["shortages"] = shortages
        await self.session.execute(
            update(StockReservation)
            .where(StockReservation.reference == reference)
            .values(**values),
            execution_options={"synchronize_session": False},
        )

    async def name_movements(
        self, *, kind: MovementKind, reference: str | None = None, reason: str | None = None
    ) -> None:
        """What the stock changes of this transaction are, for the ledger's trigger to write
        (migration 0008): settings local to the transaction, gone when it ends."""
        await self.session.execute(
            _NAME_MOVEMENTS,
            {"kind": kind.value, "reference": reference or "", "reason": reason or ""},
        )

    async def adjust(
        self, *, book_id: int, change: int | None, to: int | None, expected: int | None
    ) -> int | None:
        """Add `change`, or set `to` where the stock is `expected`, to a tracked book's stock
        unless it would go below 0; the new stock, or None when nothing changed. One
        conditional UPDATE, like reservations: no read-then-write gap."""
        new_stock: ColumnElement[int | None] = (
            Book.stock + change if change is not None else literal(to, Integer)
        )
        conditions: list[ColumnElement[bool]] = [
            Book.id == book_id,
            Book.active.is_(True),
            Book.stock.is_not(None),
            new_stock >= 0,
        ]
        if expected is not None:
            conditions.append(Book.stock == expected)
        statement = (
            update(Book)
            .where(*conditions)
            .values(stock=new_stock, updated_at=func.now())
            .returning(Book.stock)
        )
        result = await self.session.execute(
            statement, execution_options={"synchronize_session": False}
        )
        return result.scalar_one_or_none()

    async def last_movement(self, *, book_id: int) -> StockMovement:
        movement = await self.session.scalar(
            select(StockMovement)
            .where(StockMovement.book_id == book_id)
            .order_by(StockMovement.id.desc())
            .limit(1)
        )
        assert movement is not None
        return movement

    async def ledger(
        self, *, book_id: int, limit: int, offset: int
    ) -> tuple[list[StockMovement], int]:
        """A book's movements, newest first, and how many there are."""
        rows = await self.session.scalars(
            select(StockMovement)
            .where(StockMovement.book_id == book_id)
            .order_by(StockMovement.id.desc())
            .limit(limit)
            .offset(offset)
        )
        total = await self.session.scalar(
            select(func.count()).select_from(StockMovement).where(StockMovement.book_id == book_id)
        )
        return list(rows), int(total or 0)

    async def movements(self, *, reference: str, kind: MovementKind) -> list[StockLine]:
        """In book-id order, the order every writer locks books in."""
        rows = await self.session.execute(
            select(StockMovement.book_id, StockMovement.quantity)
            .where(StockMovement.reference == reference, StockMovement.kind == kind)
            .order_by(StockMovement.book_id)
        )
        return [StockLine(book_id=row.book_id, quantity=row.quantity) for row in rows]
