"""Stock rules: reserve all lines of a reference or none, release exactly what it took."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from books.db import SessionDep
from books.inventory.errors import ReferenceReused
from books.inventory.models import MovementKind, StockReservation
from books.inventory.repository import StockLevel, StockRepository, Take
from books.inventory.schemas import (
    ReleaseRead,
    ReleaseStatus,
    ReservationRead,
    ReservationStatus,
    Shortage,
    ShortageReason,
    StockLine,
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
        # Every writer locks books in id order, so two reservations cannot deadlock.
        ordered = sorted(lines, key=lambda line: line.book_id)
        if not await self.stock.claim(reference=reference, lines=ordered):
            return await self._replay(reference=reference, lines=ordered)
        savepoint = await self.stock.savepoint()
        tracked = []
        for line in ordered:
            match await self.stock.take(book_id=line.book_id, quantity=line.quantity):
                case Take.REFUSED:
                    await savepoint.rollback()
                    return await self._reject(reference=reference, lines=ordered, refused=line)
                case Take.TRACKED:
                    tracked.append(line)
        await savepoint.commit()
        await self.stock.record_movements(
            reference=reference, kind=MovementKind.RESERVE, lines=tracked
        )
        after_commit(self.session, STOCK_RESERVATIONS.labels(outcome="reserved").inc)
        return ReservationRead(
            reference=reference, status=ReservationStatus.RESERVED, lines=ordered, shortages=[]
        )

    async def _reject(
        self, *, reference: str, lines: list[StockLine], refused: StockLine
    ) -> ReservationRead:
        levels = await self.stock.stock_levels(book_ids=[line.book_id for line in lines])
        # The refused line is reported even if stock came back since its UPDATE.
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
        if outcome.lines != lines:
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
        # The row lock makes concurrent releases of one reference run one after another.
        reservation = await self.stock.get(reference=reference, lock=True)
        if reservation is None or reservation.status == ReservationStatus.REJECTED:
            STOCK_RELEASES.labels(outcome="not_reserved").inc()
            return ReleaseRead(reference=reference, status=ReleaseStatus.NOT_RESERVED, lines=[])
        lines = [StockLine.model_validate(line) for line in reservation.lines]
        if reservation.status == ReservationStatus.RELEASED:
            STOCK_RELEASES.labels(outcome="replayed").inc()
            return ReleaseRead(reference=reference, status=ReleaseStatus.RELEASED, lines=lines)
        taken = await self.stock.movements(reference=reference, kind=MovementKind.RESERVE)
        for movement in taken:
            await self.stock.give_back(book_id=movement.book_id, quantity=movement.quantity)
        await self.stock.record_movements(
            reference=reference, kind=MovementKind.RELEASE, lines=taken
        )
        await self.stock.set_outcome(reference=reference, status=ReservationStatus.RELEASED)
        after_commit(self.session, STOCK_RELEASES.labels(outcome="released").inc)
        return ReleaseRead(reference=reference, status=ReleaseStatus.RELEASED, lines=lines)


async def get_inventory_service(session: SessionDep) -> InventoryService:
    return InventoryService(session)


InventoryServiceDep = Annotated[InventoryService, Depends(get_inventory_service)]
