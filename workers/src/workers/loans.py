"""Library loans: copies move between the shelf, loans and holds at books, and orders
hears where each one went (docs/lending.md has the whole flow).

Every step is idempotent by its reference (`borrow:ID`, `hold:ID`): books answers a
repeated check-out, check-in or transfer with the state it already reached, and orders
answers a repeated status change with the loan or hold as it is. So a job that runs twice
(a retry, a worker killed mid-job, a relay delivering again) ends where one run would.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict

from workers import clients
from workers.clients import CopyStatus
from workers.config import get_settings
from workers.payloads import parse_payload
from workers.periodic import Periodic

logger = logging.getLogger(__name__)

# A sweep that keeps finding full batches stops here and leaves the rest to the next run.
SWEEP_MAX_ROUNDS = 100
REFUSALS = {
    CopyStatus.NOT_LENDABLE: "the book has no lendable copies any more",
    CopyStatus.BOOK_NOT_FOUND: "the book does not exist",
    CopyStatus.BOOK_INACTIVE: "the book was removed from the catalog",
}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class BorrowRequested(_Payload):
    borrow_id: int
    book_id: int


class CopyFreed(_Payload):
    book_id: int
    reference: str


class HoldPlaced(_Payload):
    hold_id: int
    book_id: int


class HoldCheckedOut(_Payload):
    hold_id: int
    borrow_id: int
    book_id: int


def check_out(payload: dict[str, Any]) -> str:
    """A borrow request: check a copy out and activate the loan, or queue a hold."""
    request = parse_payload(BorrowRequested, payload)
    reference = f"borrow:{request.borrow_id}"
    status = clients.books().check_out_copy(reference=reference, book_id=request.book_id)
    if status is CopyStatus.CHECKED_OUT:
        if clients.lending().activate_borrow(borrow_id=request.borrow_id) is not None:
            logger.info("borrow %s is an active loan", request.borrow_id)
            return "active"
        # The request became a hold in an earlier run, while no copy was free.
        logger.info("borrow %s is no longer pending; its copy moves on", request.borrow_id)
        return pass_copy_on(book_id=request.book_id, reference=reference)
    if status is CopyStatus.UNAVAILABLE:
        borrow = clients.lending().hold_borrow(borrow_id=request.borrow_id)
        logger.info(
            "borrow %s: no copy free, queued as hold %s",
            request.borrow_id,
            borrow and borrow.hold_id,
        )
        return "held"
    if reason := REFUSALS.get(status):
        clients.lending().reject_borrow(borrow_id=request.borrow_id, reason=reason)
        logger.info("borrow %s rejected: %s", request.borrow_id, reason)
        return "rejected"
    # checked_in / passed_on: this reference had its copy and gave it back already.
    logger.info("borrow %s: its copy was already %s", request.borrow_id, status)
    return status.value


def give_up_borrow(payload: dict[str, Any]) -> str:
    """A borrow the reconciler gave up: a copy that a job checked out for it (and could not
    tell orders about) moves on to the next hold or the shelf.

    Asking books to check a copy out under the borrow's reference answers what the reference
    has; a copy it sets aside now (none was out) moves on just the same, so nothing stays
    out for a rejected borrow, and a reference that gave its copy back already is left be."""
    request = parse_payload(BorrowRequested, payload)
    reference = f"borrow:{request.borrow_id}"
    status = clients.books().check_out_copy(reference=reference, book_id=request.book_id)
    if status is CopyStatus.CHECKED_OUT:
        return pass_copy_on(book_id=request.book_id, reference=reference)
    logger.info("borrow %s was given up; it holds no copy (%s)", request.borrow_id, status)
    return status.value


def pass_on(payload: dict[str, Any]) -> str:
    """A copy came back (a return, a cancelled or expired hold)."""
    freed = parse_payload(CopyFreed, payload)
    return pass_copy_on(book_id=freed.book_id, reference=freed.reference)


def pass_copy_on(*, book_id: int, reference: str) -> str:
    """The first waiting hold of the book gets the copy of `reference`; with nobody
    waiting, the copy goes back on the shelf. Never both: orders records which hold the
    copy went to (once per reference), books moves it without shelving it."""
    hold = clients.lending().hand_over(book_id=book_id, from_reference=reference)
    if hold is None:
        status = clients.books().check_in_copy(reference=reference)
        logger.info("copy of %s is back on the shelf (%s)", reference, status)
        return "shelved"
    hold_reference = f"hold:{hold.id}"
    status = clients.books().transfer_copy(from_reference=reference, to_reference=hold_reference)
    if status is CopyStatus.TARGET_HAS_COPY:
        # The hold took a copy off the shelf at the same time: this one is not needed.
        status = clients.books().check_in_copy(reference=reference)
        logger.info("hold %s already had a copy; %s is back on the shelf", hold.id, reference)
        return "shelved"
    if status is CopyStatus.NOT_CHECKED_OUT:
        # An earlier run shelved the copy before this hold was in line: take one again.
        status = clients.books().check_out_copy(reference=hold_reference, book_id=book_id)
        if status is not CopyStatus.CHECKED_OUT:
            logger.warning("hold %s is ready but no copy could be set aside: %s", hold.id, status)
    logger.info("copy of %s set aside for hold %s", reference, hold.id)
    return "handed_over"


def fill_hold(payload: dict[str, Any]) -> str:
    """A new hold: set a copy aside at once if one is on the shelf."""
    placed = parse_payload(HoldPlaced, payload)
    reference = f"hold:{placed.hold_id}"
    status = clients.books().check_out_copy(reference=reference, book_id=placed.book_id)
    if status is not CopyStatus.CHECKED_OUT:
        logger.info("hold %s waits for a returned copy (%s)", placed.hold_id, status)
        return "waiting"
    if clients.lending().hold_ready(hold_id=placed.hold_id) is None:
        # Cancelled (or expired) meanwhile: the copy goes to the next in line or the shelf.
        return pass_copy_on(book_id=placed.book_id, reference=reference)
    logger.info("hold %s is ready for pickup", placed.hold_id)
    return "ready"


def hand_to_loan(payload: dict[str, Any]) -> str:
    """A ready hold was checked out: its copy now belongs to the loan."""
    checked_out = parse_payload(HoldCheckedOut, payload)
    loan_reference = f"borrow:{checked_out.borrow_id}"
    status = clients.books().transfer_copy(
        from_reference=f"hold:{checked_out.hold_id}", to_reference=loan_reference
    )
    if status is CopyStatus.NOT_CHECKED_OUT:
        status = clients.books().check_out_copy(
            reference=loan_reference, book_id=checked_out.book_id
        )
    logger.info(
        "loan %s holds the copy of hold %s (%s)", checked_out.borrow_id, checked_out.hold_id, status
    )
    return status.value


class ClosingAnnounced(_Payload):
    closing_id: int


def move_due_dates(payload: dict[str, Any]) -> str:
    """Days closed at short notice: move the loans due and the holds to be picked up on
    them to the next open day, batch by batch, until orders says the closing is done.
    A run cut short (its timeout, a kill) is retried and goes on where it stopped: each
    batch is counted in orders' transaction that moves it."""
    announced = parse_payload(ClosingAnnounced, payload)
    lending = clients.lending()
    closing = lending.move_closing(closing_id=announced.closing_id)
    while closing.status != "done":
        closing = lending.move_closing(closing_id=announced.closing_id)
    logger.info(
        "closing %s moved %d loans and %d holds",
        closing.id,
        closing.loans_moved,
        closing.holds_moved,
    )
    return f"moved {closing.loans_moved} loans, {closing.holds_moved} holds"


def library_sweep(payload: dict[str, Any]) -> str:
    """The periodic round: expire uncollected holds, resume suspended holds whose date has
    come, declare long-overdue loans lost, send due and overdue notices."""
    LIBRARY_SWEEP.schedule_next()
    expired = resumed = lost = notices = 0
    for _ in range(SWEEP_MAX_ROUNDS):
        sweep = clients.lending().sweep()
        expired += sweep.expired_holds
        resumed += sweep.resumed_holds
        lost += sweep.lost_loans
        notices += sweep.notices
        if not sweep.more:
            break
    logger.info(
        "library sweep: %d holds expired, %d resumed, %d loans lost, %d notices",
        expired,
        resumed,
        lost,
        notices,
    )
    return f"expired {expired}, resumed {resumed}, lost {lost}, notices {notices}"


LIBRARY_SWEEP = Periodic(
    name="library-sweep",
    function=f"{__name__}.{library_sweep.__name__}",
    interval_s=lambda: get_settings().library_sweep_interval_s,
    timeout_s=120,
    retries_s=(10, 30, 60),
)
