"""Loan rules: who may borrow what, when a loan becomes active, returns and renewals."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
from sqlalchemy import exists, func
from sqlalchemy.ext.asyncio import AsyncSession

from orders import idempotency
from orders.books_client import BooksClient, BookSnapshot
from orders.errors import IdempotencyKeyInFlight, IllegalTransition
from orders.idempotency import Answer, Claimed, IdempotencyStore, StoredResponse, respond_once
from orders.lending import events
from orders.lending.errors import (
    AlreadyBorrowed,
    BorrowNotFound,
    LoanLimitReached,
    MemberBlocked,
    NotLendable,
    RenewalRefused,
    UnknownBook,
    UnknownMember,
)
from orders.lending.models import Borrow, BorrowStatus, Hold, HoldStatus, Member, MemberStatus
from orders.lending.policy import LendingPolicy
from orders.lending.repository import (
    OPEN_HOLD,
    BorrowRepository,
    HoldRepository,
    MemberRepository,
)
from orders.lending.schemas import BorrowCreate, BorrowListStatus, BorrowRead
from orders.metrics import (
    LIBRARY_ACTIVATION_SECONDS,
    LIBRARY_BORROWS,
    LIBRARY_LOANS_ACTIVATED,
    LIBRARY_RETURNS,
)
from orders.saga import RedrivePolicy, Settled, given_up_reason
from servicekit.api_keys import ApiKey
from servicekit.database import after_commit
from servicekit.problems import ProblemError

BORROWS_PATH = "/v1/borrows"


async def active_member(members: MemberRepository, member_id: int) -> Member:
    """The member, if they may borrow: 422 when unknown, 403 when blocked."""
    member = await members.get(member_id=member_id)
    if member is None:
        raise UnknownMember(member_id)
    if member.status is MemberStatus.BLOCKED:
        raise MemberBlocked(member_id)
    return member


async def lendable_book(books: BooksClient, book_id: int) -> BookSnapshot:
    """The book as the catalog has it now: 422 when gone, 409 when it has no copies to lend."""
    book = (await books.active_books(book_ids=[book_id])).get(book_id)
    if book is None:
        raise UnknownBook(book_id)
    if not book.copies_total:
        raise NotLendable(book_id)
    return book


async def open_loan(
    session: AsyncSession, *, member_id: int, book_id: int, values: dict[str, Any]
) -> Borrow:
    """A new borrow counted against the member's limit, both enforced by the database."""
    members = MemberRepository(session)
    if not await members.take_loan_slot(member_id=member_id):
        member = await members.get(member_id=member_id)
        if member is None:
            raise UnknownMember(member_id)
        if member.status is MemberStatus.BLOCKED:
            raise MemberBlocked(member_id)
        raise LoanLimitReached(member_id, limit=member.loan_limit, current=member.loans_out)
    borrow = await BorrowRepository(session).add(
        {"member_id": member_id, "book_id": book_id, **values}
    )
    if borrow is None:
        raise AlreadyBorrowed(member_id, book_id)
    return borrow


class LoanService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        books: BooksClient,
        policy: LendingPolicy,
        idempotency_store: IdempotencyStore | None,
    ) -> None:
        self.session = session
        self.members = MemberRepository(session)
        self.borrows = BorrowRepository(session)
        self.holds = HoldRepository(session)
        self.books = books
        self.policy = policy
        self.idempotency_store = idempotency_store

    async def request(
        self, *, data: BorrowCreate, idempotency_key: str | None, client: ApiKey
    ) -> Answer:
        """Ask for a copy once per key; a retry with the same key gets the first answer."""
        return await respond_once(
            self.idempotency_store,
            self.session,
            api_key_id=client.id,
            key=idempotency_key,
            fingerprint=idempotency.fingerprint(
                b"POST", BORROWS_PATH.encode(), msgspec.json.encode(data)
            ),
            respond=partial(self._request, data),
            count=lambda outcome: LIBRARY_BORROWS.labels(outcome).inc(),
        )

    async def _request(self, data: BorrowCreate, claim: Claimed | None) -> StoredResponse:
        try:
            # Cheap refusals first, before the call to books.
            await active_member(self.members, data.member_id)
            book = await lendable_book(self.books, data.book_id)
            borrow = await open_loan(
                self.session,
                member_id=data.member_id,
                book_id=data.book_id,
                values={
                    "book_title": book.title,
                    "book_author": book.author,
                    "status": BorrowStatus.PENDING,
                },
            )
        except ProblemError as exc:
            LIBRARY_BORROWS.labels(exc.type.rpartition("/")[2]).inc()
            raise
        await events.borrow_requested(self.session, borrow_id=borrow.id, book_id=borrow.book_id)
        response = StoredResponse(
            status=201,
            headers={
                "location": f"{BORROWS_PATH}/{borrow.id}",
                "content-type": "application/json",
            },
            body=msgspec.json.encode(BorrowRead.of(borrow, now=borrow.requested_at)),
        )
        if claim is not None and not await idempotency.complete(
            self.session, claim, response=response
        ):
            raise IdempotencyKeyInFlight()
        after_commit(self.session, LIBRARY_BORROWS.labels("requested").inc)
        return response

    async def get(self, *, borrow_id: int) -> Borrow:
        borrow = await self.borrows.get(borrow_id=borrow_id)
        if borrow is None:
            raise BorrowNotFound(borrow_id)
        return borrow

    async def list_borrows(
        self,
        *,
        limit: int,
        offset: int,
        status: BorrowListStatus | None,
        member_id: int | None,
        book_id: int | None,
    ) -> tuple[list[Borrow], int]:
        borrows = await self.borrows.list(
            limit=limit, offset=offset, status=status, member_id=member_id, book_id=book_id
        )
        total = await self.borrows.count(status=status, member_id=member_id, book_id=book_id)
        return borrows, total

    @staticmethod
    def now() -> datetime:
        """What `overdue` is judged against in answers (the statements use `now()`)."""
        return datetime.now(UTC)

    async def give_back(self, *, borrow_id: int) -> Borrow:
        """active -> returned, with the late fee; the copy goes to the next hold or the shelf.

        A repeat returns the same loan and changes nothing.
        """
        borrow = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.ACTIVE,),
            values={"status": BorrowStatus.RETURNED, "returned_at": func.now()},
        )
        if borrow is None:
            return await self._unchanged(borrow_id, target=BorrowStatus.RETURNED)
        assert borrow.due_at is not None
        assert borrow.returned_at is not None
        fee = self.policy.late_fee(due_at=borrow.due_at, returned_at=borrow.returned_at)
        borrow = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.RETURNED,),
            values={"late_fee": fee},
        )
        assert borrow is not None
        await self.members.give_back_loan_slot(member_id=borrow.member_id)
        await events.copy_freed(self.session, book_id=borrow.book_id, reference=borrow.reference)
        after_commit(self.session, LIBRARY_RETURNS.labels(str(fee > 0).lower()).inc)
        return borrow

    async def renew(self, *, borrow_id: int) -> Borrow:
        """Push the due date back one loan period, within the rules (each refusal says which)."""
        borrow = await self.get(borrow_id=borrow_id)
        now = self.now()
        if borrow.status is not BorrowStatus.ACTIVE:
            raise RenewalRefused(
                f"Borrow {borrow_id} is {borrow.status}; only an active loan can be renewed."
            )
        assert borrow.due_at is not None
        if borrow.renewals >= self.policy.max_renewals:
            raise RenewalRefused(
                f"Loan {borrow_id} was renewed {borrow.renewals} time(s), the most allowed; "
                "return the book, then borrow it again."
            )
        if borrow.due_at < now - self.policy.renew_grace:
            raise RenewalRefused(
                f"Loan {borrow_id} is overdue since {borrow.due_at:%Y-%m-%d}; "
                "an overdue loan cannot be renewed, return the book."
            )
        if await self.holds.others_waiting(book_id=borrow.book_id, member_id=borrow.member_id):
            raise RenewalRefused(
                f"Another member is waiting for book {borrow.book_id}; "
                "the loan cannot be renewed, return the book by its due date."
            )
        renewed = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.ACTIVE,),
            values={
                "due_at": Borrow.due_at + self.policy.loan_period,
                "renewals": Borrow.renewals + 1,
            },
            # The checks above, again in the statement that decides: a concurrent renewal
            # or a hold placed meanwhile makes this one refuse.
            where=(
                Borrow.renewals == borrow.renewals,
                Borrow.due_at >= func.now() - self.policy.renew_grace,
                ~exists().where(
                    Hold.book_id == Borrow.book_id,
                    Hold.status.in_(OPEN_HOLD),
                    Hold.member_id != Borrow.member_id,
                ),
            ),
        )
        if renewed is None:
            raise RenewalRefused(
                f"Loan {borrow_id} changed while it was being renewed; fetch it and try again."
            )
        return renewed

    async def activate(self, *, borrow_id: int) -> Borrow:
        """pending -> active once a worker has checked a copy out; a repeat is harmless."""
        borrow = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.PENDING,),
            values={
                "status": BorrowStatus.ACTIVE,
                "borrowed_at": func.now(),
                "due_at": func.now() + self.policy.loan_period,
            },
        )
        if borrow is None:
            return await self._unchanged(borrow_id, target=BorrowStatus.ACTIVE)
        assert borrow.borrowed_at is not None
        waited = (borrow.borrowed_at - borrow.requested_at).total_seconds()
        after_commit(self.session, LIBRARY_LOANS_ACTIVATED.inc)
        after_commit(self.session, partial(LIBRARY_ACTIVATION_SECONDS.observe, waited))
        return borrow

    async def hold_instead(self, *, borrow_id: int) -> Borrow:
        """pending -> held: no copy was free, so the member queues for one (a repeat is
        harmless). The new hold is tried against the shelf once more right away."""
        borrow = await self.borrows.get(borrow_id=borrow_id, lock=True)
        if borrow is None:
            raise BorrowNotFound(borrow_id)
        if borrow.status is BorrowStatus.HELD:
            return borrow
        if borrow.status is not BorrowStatus.PENDING:
            raise IllegalTransition(
                f"Borrow {borrow_id}", current=borrow.status, target=BorrowStatus.HELD
            )
        hold = await self.holds.add(
            {
                "member_id": borrow.member_id,
                "book_id": borrow.book_id,
                "book_title": borrow.book_title,
                "book_author": borrow.book_author,
                "status": HoldStatus.WAITING,
            }
        )
        if hold is not None:
            await events.hold_placed(self.session, hold_id=hold.id, book_id=hold.book_id)
        else:
            hold = await self.holds.open_hold(member_id=borrow.member_id, book_id=borrow.book_id)
            assert hold is not None
        held = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.PENDING,),
            values={"status": BorrowStatus.HELD, "hold_id": hold.id},
        )
        assert held is not None
        await self.members.give_back_loan_slot(member_id=borrow.member_id)
        return held

    async def reject(self, *, borrow_id: int, reason: str) -> Borrow:
        """pending -> rejected (the book went away, or the reconciler gave the borrow up); a
        repeat keeps the first reason."""
        borrow = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.PENDING,),
            values={"status": BorrowStatus.REJECTED, "rejection_reason": reason},
        )
        if borrow is None:
            return await self._unchanged(borrow_id, target=BorrowStatus.REJECTED)
        await self.members.give_back_loan_slot(member_id=borrow.member_id)
        return borrow

    async def settle_stalled(self, *, policy: RedrivePolicy) -> Settled:
        """Announce pending borrows again whose job is overdue, or give them up (see
        orders.saga); one batch."""
        stalled = await self.borrows.stalled(policy=policy)
        redriven = [borrow for borrow in stalled if not policy.gives_up(borrow.redrives)]
        for borrow in redriven:
            await events.borrow_requested(self.session, borrow_id=borrow.id, book_id=borrow.book_id)
        await self.borrows.count_redrive(borrow_ids=[borrow.id for borrow in redriven])
        given_up = [borrow for borrow in stalled if policy.gives_up(borrow.redrives)]
        reason = given_up_reason(policy, "The check-out")
        for borrow in given_up:
            await self.reject(borrow_id=borrow.id, reason=reason)
            await events.borrow_given_up(self.session, borrow_id=borrow.id, book_id=borrow.book_id)
        return Settled(redriven=len(redriven), given_up=len(given_up))

    async def _unchanged(self, borrow_id: int, *, target: BorrowStatus) -> Borrow:
        """Why a borrow did not move: gone (404), already there (a repeat), or illegal (409)."""
        borrow = await self.get(borrow_id=borrow_id)
        if borrow.status is target:
            return borrow
        raise IllegalTransition(f"Borrow {borrow_id}", current=borrow.status, target=target)
