"""Internal HTTP API of lending for the workers: not in the public OpenAPI, service key
required. Each call is idempotent; a repeat answers the state it already reached."""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from orders.http import json_body
from orders.lending.closed_days import CalendarService
from orders.lending.controllers import LENDING_DEPENDENCIES, BorrowIdPath, HoldIdPath
from orders.lending.holds import HoldService
from orders.lending.library import LibraryService
from orders.lending.loans import LoanService
from orders.lending.notices import NoticeService
from orders.lending.rule_controllers import ClosingIdPath, provide_calendar
from orders.lending.rule_schemas import ClosingRead
from orders.lending.schemas import (
    BorrowRead,
    BorrowReject,
    DeliveryRead,
    DeliveryReport,
    HandOver,
    HandOverRead,
    HoldRead,
    NoticeRead,
    SweepRead,
)
from orders.security import require_service_key


class InternalLendingController(Controller):
    path = "/internal/v1"
    include_in_schema = False
    guards = [require_service_key]
    dependencies = LENDING_DEPENDENCIES

    @post("/borrows/{borrow_id:str}/activate", status_code=200)
    async def activate_borrow(
        self, loans: NamedDependency[LoanService], borrow_id: BorrowIdPath
    ) -> BorrowRead:
        """A copy is checked out for the borrow: it becomes an active loan."""
        borrow = await loans.activate(borrow_id=borrow_id)
        return BorrowRead.of(borrow, now=loans.now())

    @post("/borrows/{borrow_id:str}/hold", status_code=200)
    async def hold_borrow(
        self, loans: NamedDependency[LoanService], borrow_id: BorrowIdPath
    ) -> BorrowRead:
        """No copy was free: the borrow becomes a hold."""
        borrow = await loans.hold_instead(borrow_id=borrow_id)
        return BorrowRead.of(borrow, now=loans.now())

    @post("/borrows/{borrow_id:str}/reject", status_code=200, guards=[json_body(BorrowReject)])
    async def reject_borrow(
        self,
        data: JSONBody[BorrowReject],
        loans: NamedDependency[LoanService],
        borrow_id: BorrowIdPath,
    ) -> BorrowRead:
        """The book cannot be lent (gone, or no longer lendable)."""
        borrow = await loans.reject(borrow_id=borrow_id, reason=data.reason.strip())
        return BorrowRead.of(borrow, now=loans.now())

    @post("/holds/{hold_id:str}/ready", status_code=200)
    async def fill_hold(self, holds: NamedDependency[HoldService], hold_id: HoldIdPath) -> HoldRead:
        """A copy was taken off the shelf for the hold: it is ready for pickup."""
        return HoldRead.of(await holds.fill_from_shelf(hold_id=hold_id))

    @post("/holds/hand-over", status_code=200, guards=[json_body(HandOver)])
    async def hand_over(
        self, data: JSONBody[HandOver], holds: NamedDependency[HoldService]
    ) -> HandOverRead:
        """Give a freed copy to the first waiting hold of its book, if any."""
        hold = await holds.hand_over(book_id=data.book_id, from_reference=data.from_reference)
        return HandOverRead(hold=None if hold is None else HoldRead.of(hold))

    @post("/notices/deliveries", status_code=200, guards=[json_body(DeliveryReport)])
    async def notice_delivery(
        self, data: JSONBody[DeliveryReport], session: NamedDependency[AsyncSession]
    ) -> DeliveryRead:
        """How one attempt to mail notices went: sent, or failed with its reason."""
        notices = await NoticeService(session).report(data=data)
        return DeliveryRead(notices=[NoticeRead.of(notice) for notice in notices])

    @post(
        "/closings/{closing_id:str}/move",
        status_code=200,
        dependencies={"calendar": Provide(provide_calendar, sync_to_thread=False)},
    )
    async def move_closing(
        self, calendar: NamedDependency[CalendarService], closing_id: ClosingIdPath
    ) -> ClosingRead:
        """One batch of a closing's moves; call again until `status` is `done`."""
        return ClosingRead.of(await calendar.move_batch(closing_id=closing_id))

    @post("/library/sweep", status_code=200)
    async def sweep(self, library: NamedDependency[LibraryService]) -> SweepRead:
        """Expire uncollected holds, record today's notices, refresh the lending gauges."""
        return await library.sweep()
