"""Copy rules: a reference takes at most one copy, gives it back or hands it on once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from books.db import SessionDep
from books.lending.errors import ReferenceHoldsAnotherBook, TransferTargetTaken
from books.lending.models import CopyLoan, LoanState
from books.lending.repository import CopyRepository, Shelf
from books.lending.schemas import (
    CheckinRead,
    CheckinStatus,
    CheckoutRead,
    CheckoutStatus,
    TransferRead,
    TransferStatus,
)
from books.metrics import COPY_MOVEMENTS
from servicekit.database import after_commit

# What a reference that already has a row answers: it took its copy, nothing more.
_CHECKOUT_REPLAYS = {
    LoanState.OUT: CheckoutStatus.CHECKED_OUT,
    LoanState.IN: CheckoutStatus.CHECKED_IN,
    LoanState.PASSED: CheckoutStatus.PASSED_ON,
}
_CHECKIN_REPLAYS = {
    LoanState.IN: CheckinStatus.CHECKED_IN,
    LoanState.PASSED: CheckinStatus.PASSED_ON,
}


def refusal(shelf: Shelf | None) -> CheckoutStatus:
    if shelf is None:
        return CheckoutStatus.BOOK_NOT_FOUND
    if not shelf.active:
        return CheckoutStatus.BOOK_INACTIVE
    if shelf.copies_total is None:
        return CheckoutStatus.NOT_LENDABLE
    return CheckoutStatus.UNAVAILABLE


class LendingService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.copies = CopyRepository(session)

    def _count(self, kind: str, outcome: str) -> None:
        after_commit(self.session, COPY_MOVEMENTS.labels(kind=kind, outcome=outcome).inc)

    async def check_out(self, *, reference: str, book_id: int) -> CheckoutRead:
        savepoint = await self.copies.savepoint()
        if not await self.copies.claim(reference=reference, book_id=book_id):
            await savepoint.rollback()
            return await self._replay_checkout(reference=reference, book_id=book_id)
        if not await self.copies.take_copy(book_id=book_id):
            # No copy for this reference: nothing of the call stays, a later one may succeed.
            await savepoint.rollback()
            status = refusal(await self.copies.shelf(book_id=book_id))
            self._count("checkout", status)
            return CheckoutRead(reference=reference, book_id=book_id, status=status)
        await savepoint.commit()
        self._count("checkout", CheckoutStatus.CHECKED_OUT)
        return CheckoutRead(reference=reference, book_id=book_id, status=CheckoutStatus.CHECKED_OUT)

    async def _replay_checkout(self, *, reference: str, book_id: int) -> CheckoutRead:
        loan = await self.copies.get(reference=reference)
        if loan is None:
            # claim() inserts nothing for a book id that does not exist.
            self._count("checkout", CheckoutStatus.BOOK_NOT_FOUND)
            return CheckoutRead(
                reference=reference, book_id=book_id, status=CheckoutStatus.BOOK_NOT_FOUND
            )
        if loan.book_id != book_id:
            raise ReferenceHoldsAnotherBook(
                reference=reference, book_id=book_id, held_book_id=loan.book_id
            )
        self._count("checkout", "replayed")
        return CheckoutRead(
            reference=reference, book_id=book_id, status=_CHECKOUT_REPLAYS[LoanState(loan.state)]
        )

    async def check_in(self, *, reference: str) -> CheckinRead:
        book_id = await self.copies.check_in(reference=reference)
        if book_id is not None:
            await self.copies.give_back_copy(book_id=book_id)
            self._count("checkin", CheckinStatus.CHECKED_IN)
            return CheckinRead(
                reference=reference, book_id=book_id, status=CheckinStatus.CHECKED_IN
            )
        loan = await self.copies.get(reference=reference)
        if loan is None:
            self._count("checkin", CheckinStatus.NOT_CHECKED_OUT)
            return CheckinRead(
                reference=reference, book_id=None, status=CheckinStatus.NOT_CHECKED_OUT
            )
        # Not `out` any more: the UPDATE above waited for whoever changed it.
        self._count("checkin", "replayed")
        return CheckinRead(
            reference=reference,
            book_id=loan.book_id,
            status=_CHECKIN_REPLAYS[LoanState(loan.state)],
        )

    async def transfer(self, *, from_reference: str, to_reference: str) -> TransferRead:
        loans = await self.copies.lock(from_reference, to_reference)
        source, target = loans.get(from_reference), loans.get(to_reference)
        if source is not None and source.passed_to == to_reference:
            self._count("transfer", "replayed")
            return self._transfer_read(source, to_reference, TransferStatus.TRANSFERRED)
        if source is None or source.state != LoanState.OUT:
            self._count("transfer", TransferStatus.NOT_CHECKED_OUT)
            return TransferRead(
                from_reference=from_reference,
                to_reference=to_reference,
                book_id=None if source is None else source.book_id,
                status=TransferStatus.NOT_CHECKED_OUT,
            )
        if target is not None or not await self.copies.pass_on(
            loan=source, to_reference=to_reference
        ):
            raise TransferTargetTaken(from_reference=from_reference, to_reference=to_reference)
        self._count("transfer", TransferStatus.TRANSFERRED)
        return self._transfer_read(source, to_reference, TransferStatus.TRANSFERRED)

    @staticmethod
    def _transfer_read(source: CopyLoan, to_reference: str, status: TransferStatus) -> TransferRead:
        return TransferRead(
            from_reference=source.reference,
            to_reference=to_reference,
            book_id=source.book_id,
            status=status,
        )


async def get_lending_service(session: SessionDep) -> LendingService:
    return LendingService(session)


LendingServiceDep = Annotated[LendingService, Depends(get_lending_service)]
