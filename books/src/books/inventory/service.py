"""Stock rules: reserve all lines of a reference or none, release exactly what it took;
adjust a book's stock by a change, or to a count where it is what the counter saw."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from books.db import SessionDep
from books.errors import BookNotFound
from books.inventory.errors import (
    ReferenceReused,
    StockChanged,
    StockNotTracked,
    StockWouldBeNegative,
)
from books.inventory.models import StockReservation
from books.inventory.repository import StockLevel, StockRepository
from books.inventory.schemas import (
    MovementKind,
    ReleaseRead,
    ReleaseStatus,
    ReservationRead,
    ReservationStatus,
    Shortage,
    ShortageReason,
    StockAdjusted,
    StockAdjustment,
    StockLine,
    StockMovementPage,
    StockMovementRead,
)
from books.metrics import STOCK_RELEASES, STOCK_RESERVATIONS
from servicekit.database import after_commit


def shortage_of(line: StockLine, level: StockLevel | None) -> Shortage:
    if level is None:
        reason, available = ShortageReason.BOOK_NOT_FOUND, 0
    elif not level.active:
        reason, available = ShortageReason.BOOK_INACTIVE, 0
    else:
        reason, available = ShortageReason.INSUFFICIENT_STOCK, level.stock or 0
    return Shortage(
        book_id=line.book_id, requested=line.quantity, available=available, reason=reason
    )


def lacks(line: StockLine, level: StockLevel | None) -> bool:
    return (
        level is None
        or not level.active
        or (level.stock is not None and level.stock < line.quantity)
    )


class InventoryService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.stock = StockRepository(session)

    async def reserve_stock(self, *, reference: str, lines: Sequence[StockLine]) -> ReservationRead:
        ordered = sorted(lines, key=lambda line: line.book_id)
        refused = await self.stock.reserve(reference=reference, lines=ordered)
        if refused is None:
            return await self._replay(reference=reference, lines=ordered)
        if refused:
            first = next(line for line in ordered if line.book_id == refused[0])
            return await self._reject(reference=reference, lines=ordered, refused=first)
        after_commit(self.session, STOCK_RESERVATIONS.labels(outcome="reserved").inc)
        return ReservationRead(
            reference=reference, status=ReservationStatus.RESERVED, lines=ordered, shortages=[]
        )

    async def _reject(
        self, *, reference: str, lines: list[StockLine], refused: StockLine
    ) -> ReservationRead:
        levels = await self.stock.stock_levels(book_ids=[line.book_id for line in lines])
        # The refused line is reported even if stock came back since it was refused.
        shortages = [
            shortage_of(line, levels.get(line.book_id))
            for line in lines
            if line == refused or lacks(line, levels.get(line.book_id))
        ]
        await self.stock.set_outcome(
            reference=reference,
            status=ReservationStatus.REJECTED,
            shortages=[shortage.model_dump(mode="json") for shortage in shortages],
        )
        after_commit(self.session, STOCK_RESERVATIONS.labels(outcome="rejected").inc)
        return ReservationRead(
            reference=reference,
            status=ReservationStatus.REJECTED,
            lines=lines,
            shortages=shortages,
        )

    async def _replay(self, *, reference: str, lines: list[StockLine]) -> ReservationRead:
        reservation = await self._stored(reference=reference)
        outcome = ReservationRead.model_validate(reservation)
        if outcome.lines != lines and not _fenced(reservation):
            raise ReferenceReused(reference)
        STOCK_RESERVATIONS.labels(outcome="replayed").inc()
        return outcome

    async def _stored(self, *, reference: str, lock: bool = False) -> StockReservation:
        reservation = await self.stock.get(reference=reference, lock=lock)
        # claim() only returns False once a committed row holds the reference, and rows
        # are never deleted.
        assert reservation is not None
        return reservation

    async def release_stock(self, *, reference: str) -> ReleaseRead:
        """Give back what the reference holds. A reference that holds nothing yet is fenced
        (stored as released with no lines): a reservation still on its way for it, such
        as a retried job of an order cancelled meanwhile, then replays "released" and
        takes nothing, so no stock can be reserved after its release."""
        if await self.stock.claim(reference=reference, lines=[], status=ReservationStatus.RELEASED):
            STOCK_RELEASES.labels(outcome="not_reserved").inc()
            return ReleaseRead(reference=reference, status=ReleaseStatus.NOT_RESERVED, lines=[])
        # The row lock makes concurrent releases of one reference run one after another.
        reservation = await self._stored(reference=reference, lock=True)
        if reservation.status == ReservationStatus.REJECTED or _fenced(reservation):
            STOCK_RELEASES.labels(outcome="not_reserved").inc()
            return ReleaseRead(reference=reference, status=ReleaseStatus.NOT_RESERVED, lines=[])
        lines = [StockLine.model_validate(line) for line in reservation.lines]
        if reservation.status == ReservationStatus.RELEASED:
            STOCK_RELEASES.labels(outcome="replayed").inc()
            return ReleaseRead(reference=reference, status=ReleaseStatus.RELEASED, lines=lines)
        taken = await self.stock.movements(reference=reference, kind=MovementKind.RESERVE)
        await self.stock.name_movements(kind=MovementKind.RELEASE, reference=reference)
        for movement in taken:
            await self.stock.give_back(book_id=movement.book_id, quantity=movement.quantity)
        await self.stock.set_outcome(reference=reference, status=ReservationStatus.RELEASED)
        after_commit(self.session, STOCK_RELEASES.labels(outcome="released").inc)
        return ReleaseRead(reference=reference, status=ReleaseStatus.RELEASED, lines=lines)

    async def adjust_stock(self, *, book_id: int, adjustment: StockAdjustment) -> StockAdjusted:
        change = adjustment.change
        if change is None:
            assert adjustment.set is not None
            assert adjustment.expected is not None
            moved = adjustment.set - adjustment.expected
        else:
            moved = change
        await self.stock.name_movements(
            kind=MovementKind.RESTOCK if moved > 0 else MovementKind.REMOVAL,
            reason=adjustment.reason,
        )
        stock = await self.stock.adjust(
            book_id=book_id, change=change, to=adjustment.set, expected=adjustment.expected
        )
        if stock is None:
            raise await self._why_not_adjusted(book_id=book_id, adjustment=adjustment)
        if moved == 0:  # a count that found what was expected: nothing moved
            return StockAdjusted(stock=stock, movement=None)
        movement = await self.stock.last_movement(book_id=book_id)
        return StockAdjusted(stock=stock, movement=StockMovementRead.model_validate(movement))

    async def _why_not_adjusted(
        self, *, book_id: int, adjustment: StockAdjustment
    ) -> BookNotFound | StockNotTracked | StockChanged | StockWouldBeNegative:
        level = (await self.stock.stock_levels(book_ids=[book_id])).get(book_id)
        if level is None or not level.active:
            return BookNotFound(book_id)
        if level.stock is None:
            return StockNotTracked(book_id)
        if adjustment.change is None:
            assert adjustment.expected is not None
            return StockChanged(book_id=book_id, stock=level.stock, expected=adjustment.expected)
        return StockWouldBeNegative(book_id=book_id, stock=level.stock, change=adjustment.change)

    async def ledger(self, *, book_id: int, limit: int, offset: int) -> StockMovementPage:
        level = (await self.stock.stock_levels(book_ids=[book_id])).get(book_id)
        if level is None or not level.active:
            raise BookNotFound(book_id)
        movements, total = await self.stock.ledger(book_id=book_id, limit=limit, offset=offset)
        return StockMovementPage(
            data=[StockMovementRead.model_validate(movement) for movement in movements],
            total=total,
            limit=limit,
            offset=offset,
        )


async def get_inventory_service(session: SessionDep) -> InventoryService:
    return InventoryService(session)


InventoryServiceDep = Annotated[InventoryService, Depends(get_inventory_service)]


def _fenced(reservation: StockReservation) -> bool:
    """Released before anything was reserved under its reference (see release_stock)."""
    return reservation.status == ReservationStatus.RELEASED and not reservation.lines
