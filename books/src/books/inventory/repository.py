"""All SQL of the stock ledger and of stock levels on books."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import ColumnElement, Integer, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from books.catalog.models import Book
from books.inventory.models import StockMovement, StockReservation
from books.inventory.schemas import MovementKind, ReservationStatus, StockLine
from servicekit.database import session_rows


class StockLevel(NamedTuple):
    active: bool
    stock: int | None


# A reservation in one statement, in this order, each step waiting on the one before
# (a CTE runs when a later one first reads it): claim the reference (waiting for an
# in-flight claim of it to commit or roll back), lock the claimed lines' tracked books in
# id order (the order every writer locks books in, so reservations cannot deadlock), decide
# every line on the locked rows, then take the stock of all lines or of none, with the
# ledger's trigger told what the movements are. A lock waits for a concurrent writer and
# then rereads the row, so the decision sees the latest stock, and the UPDATE writes what
# was locked less the line: computed from the statement's snapshot instead, a row changed
# since would fail the stock's CHECK before PostgreSQL rereads it. The CHECK (never below 0)
# still holds in the database. An untracked book is checked on the statement's snapshot,
# never written nor locked, so orders of a popular untracked book do not queue on its row.
_RESERVE = sql.SQL(
    """
    WITH line AS (
        SELECT * FROM unnest(CAST(%(book_ids)s AS bigint[]), CAST(%(quantities)s AS integer[]))
            AS line (book_id, quantity)
    ), claimed AS (
        INSERT INTO stock_reservations (reference, status, lines)
        VALUES (%(reference)s, 'reserved', %(lines)s)
        ON CONFLICT (reference) DO NOTHING
        RETURNING reference
    ), named AS (
        SELECT set_config('books.stock_kind', 'reserve', true),
               set_config('books.stock_reference', reference, true),
               set_config('books.stock_reason', '', true)
        FROM claimed
    ), locked AS (
        SELECT id, stock FROM books
        WHERE id = ANY (CAST(%(book_ids)s AS bigint[])) AND active AND stock IS NOT NULL
            AND EXISTS (SELECT FROM claimed)
        ORDER BY id
        FOR UPDATE
    ), decided AS (
        SELECT line.book_id, line.quantity,
            CASE WHEN locked.id IS NOT NULL THEN locked.stock >= line.quantity
                 ELSE coalesce(book.active AND book.stock IS NULL, false)
            END AS available
        FROM line
        LEFT JOIN locked ON locked.id = line.book_id
        LEFT JOIN books AS book ON book.id = line.book_id
    ), taken AS (
        UPDATE books SET stock = locked.stock - line.quantity, updated_at = now()
        FROM locked JOIN line ON line.book_id = locked.id
        WHERE books.id = locked.id
            AND (SELECT bool_and(available) FROM decided)
            AND EXISTS (SELECT FROM named)
        RETURNING books.id
    )
    SELECT EXISTS (SELECT FROM claimed) AS claimed, book_id, available
    FROM decided
    ORDER BY book_id
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

    async def reserve(self, *, reference: str, lines: Sequence[StockLine]) -> list[int] | None:
        """Reserve every line (in book-id order) for the reference, or none, in one
        statement (see `_RESERVE`): the books whose line could not be had, in id order
        (none: reserved), or None when the reference was claimed already."""
        rows = await session_rows(
            self.session,
            _RESERVE,
            {
                "reference": reference,
                "lines": Jsonb([line.model_dump() for line in lines]),
                "book_ids": [line.book_id for line in lines],
                "quantities": [line.quantity for line in lines],
            },
        )
        if not rows[0]["claimed"]:
            return None
        return [row["book_id"] for row in rows if not row["available"]]

    async def get(self, *, reference: str, lock: bool = False) -> StockReservation | None:
        statement = select(StockReservation).where(StockReservation.reference == reference)
        if lock:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

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
