"""Hold rules: a queue per book (first come, first served, unless staff reorder it), a copy
set aside for the first in line who is not suspended, a pickup deadline in open days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orders.books_client import BooksClient
from orders.errors import BooksUnavailable, IllegalTransition
from orders.lending import events
from orders.lending.errors import (
    AlreadyBorrowed,
    AlreadyHolding,
    HoldNotFound,
    HoldNotReady,
    HoldNotSuspendable,
    HoldNotSuspended,
    HoldsNotAllowed,
    QueueChanged,
    RepeatedHolds,
    ResumeDateNotAhead,
)
from orders.lending.loans import (
    active_member,
    in_good_standing,
    lendable_book,
    open_loan,
    shop_offer,
    within_hold_cap,
)
from orders.lending.models import Borrow, BorrowStatus, Hold, HoldStatus, OverrideAction
from orders.lending.notices import NoticeService
from orders.lending.overrides import Override
from orders.lending.policy import PolicyResolver
from orders.lending.repository import (
    QUEUED,
    BorrowRepository,
    HoldRepository,
    MemberRepository,
    due_date,
    pickup_deadline,
)
from orders.lending.schemas import DryRunRead
from orders.lending.waits import Outlook, estimate_available_at
from orders.ordering.schemas import BuyInstead, utc
from servicekit.database import rolled_back


def shelf_copy(hold_id: int) -> str:
    """What `copy_from` says of a copy a worker took off the shelf for the hold."""
    return f"shelf:{hold_id}"


class HoldService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        books: BooksClient,
        buy_instead_after: timedelta = timedelta(days=14),
    ) -> None:
        self.session = session
        self.members = MemberRepository(session)
        self.borrows = BorrowRepository(session)
        self.holds = HoldRepository(session)
        self.notices = NoticeService(session)
        self.books = books
        self.resolver = PolicyResolver(session)
        self.buy_instead_after = buy_instead_after

    async def place(
        self, *, member_id: int, book_id: int, override: Override | None = None
    ) -> Hold:
        """Queue the member for the book; a copy on the shelf is set aside at once."""
        member = await active_member(
            self.members, member_id, action=OverrideAction.HOLD, override=override
        )
        book, policy = await lendable_book(
            self.books, self.resolver, member=member, book_id=book_id
        )
        if not policy.holds_allowed:
            raise HoldsNotAllowed(book_id, item_type=book.format, policy_id=policy.id).offering(
                shop_offer(book)
            )
        if await self.borrows.has_open(member_id=member_id, book_id=book_id):
            raise AlreadyBorrowed(member_id, book_id)
        await within_hold_cap(
            self.session, member_id=member_id, item_type=book.format, policy=policy
        )
        hold = await self.holds.add(
            {
                "member_id": member_id,
                "book_id": book_id,
                "book_title": book.title,
                "book_author": book.author,
                "item_type": book.format,
                "status": HoldStatus.WAITING,
            }
        )
        if hold is None:
            raise AlreadyHolding(member_id, book_id)
        await events.hold_placed(self.session, hold_id=hold.id, book_id=book_id)
        return hold

    async def try_place(
        self, *, member_id: int, book_id: int, override: Override | None = None
    ) -> DryRunRead:
        """What placing a hold would do now; nothing kept."""
        async with rolled_back(self.session):
            hold = await self.place(member_id=member_id, book_id=book_id, override=override)
            position = await self.position(hold)
            policy = await self.resolver.for_member(member_id=member_id, item_type=hold.item_type)
        return DryRunRead(
            dry_run=True,
            action="hold",
            outcome=f"The member would be number {position} in the book's queue; a copy on "
            f"the shelf would be set aside at once, kept {policy.hold_pickup.days} open "
            "day(s).",
            policy_id=policy.id,
            member_id=member_id,
            book_id=book_id,
            position=position,
            overrides=None if override is None else override.used_on,
        )

    async def try_check_out(self, *, hold_id: int, override: Override | None = None) -> DryRunRead:
        """What checking out a ready hold would do now; nothing kept."""
        async with rolled_back(self.session):
            borrow, created = await self.check_out(hold_id=hold_id, override=override)
            policy = await self.resolver.for_member(
                member_id=borrow.member_id, item_type=borrow.item_type
            )
            due_at = borrow.due_at
            member_id, book_id = borrow.member_id, borrow.book_id
        return DryRunRead(
            dry_run=True,
            action="checkout",
            outcome="The copy set aside would be lent until due_at."
            if created
            else "The hold was checked out already: nothing would change.",
            policy_id=policy.id,
            member_id=member_id,
            book_id=book_id,
            due_at=None if due_at is None else utc(due_at),
            overrides=None if override is None else override.used_on,
        )

    async def get(self, *, hold_id: int) -> Hold:
        hold = await self.holds.get(hold_id=hold_id)
        if hold is None:
            raise HoldNotFound(hold_id)
        return hold

    async def position(self, hold: Hold) -> int | None:
        if hold.status not in QUEUED:
            return None
        position, _waiting_ahead = await self.holds.place_in_queue(hold=hold)
        return position

    async def outlook(self, hold: Hold) -> Outlook:
        """A queued hold's place in the queue and, while it waits, its estimated wait (see
        `orders.lending.waits`): the suspended holds ahead are passed over, so they do not
        count. Nothing for a hold that left the queue."""
        if hold.status not in QUEUED:
            return Outlook()
        position, waiting_ahead = await self.holds.place_in_queue(hold=hold)
        if hold.status is HoldStatus.SUSPENDED:
            return Outlook(position=position)
        due_dates, ready = await self.holds.queue_of(book_id=hold.book_id)
        policy = await self.resolver.for_member(member_id=hold.member_id, item_type=hold.item_type)
        now = datetime.now(UTC)
        available_at = estimate_available_at(
            now=now,
            due_dates=due_dates,
            ready_holds=ready,
            ahead=waiting_ahead,
            loan_period=policy.loan_period,
        )
        buy = None
        if available_at - now > self.buy_instead_after:
            buy = await self._buy_instead(hold.book_id)
        return Outlook(position=position, estimated_available_at=available_at, buy_instead=buy)

    async def _buy_instead(self, book_id: int) -> BuyInstead | None:
        """The shop's offer of the book, if it sells it and has it in stock. A hold is read
        without it while books cannot be asked: the offer is a courtesy, not the answer."""
        try:
            book = (await self.books.active_books(book_ids=[book_id])).get(book_id)
        except BooksUnavailable:
            return None
        return None if book is None else shop_offer(book)

    async def list_holds(
        self,
        *,
        limit: int,
        offset: int,
        status: HoldStatus | None,
        member_id: int | None,
        book_id: int | None,
    ) -> tuple[list[Hold], int]:
        holds = await self.holds.list(
            limit=limit, offset=offset, status=status, member_id=member_id, book_id=book_id
        )
        total = await self.holds.count(status=status, member_id=member_id, book_id=book_id)
        return holds, total

    async def cancel(self, *, hold_id: int) -> Hold:
        """waiting|suspended|ready -> cancelled; a copy set aside goes to the next in line.
        Repeats are harmless; a fulfilled or expired hold cannot be cancelled (409)."""
        closed = {"status": HoldStatus.CANCELLED, "closed_at": func.now(), "suspended_until": None}
        hold = await self.holds.change(
            hold_id=hold_id, allowed_from=(HoldStatus.READY,), values=closed
        )
        if hold is not None:
            await events.copy_freed(self.session, book_id=hold.book_id, reference=hold.reference)
            return hold
        hold = await self.holds.change(hold_id=hold_id, allowed_from=QUEUED, values=closed)
        if hold is not None:
            return hold
        hold = await self.get(hold_id=hold_id)
        if hold.status is HoldStatus.CANCELLED:
            return hold
        raise IllegalTransition(f"Hold {hold_id}", current=hold.status, target=HoldStatus.CANCELLED)

    async def suspend(self, *, hold_id: int, until: date | None) -> Hold:
        """waiting -> suspended: the hold keeps its place in the queue, but copies pass it
        by until it is resumed (by the member, or by the library sweep on `until`).

        Suspending a suspended hold again sets its resume date to `until` (a repeat changes
        nothing); a hold that is not in the queue (ready, closed) is a 409.
        """
        today = datetime.now(UTC).date()
        if until is not None and until <= today:
            raise ResumeDateNotAhead(today)
        hold = await self.holds.change(
            hold_id=hold_id,
            allowed_from=QUEUED,
            values={"status": HoldStatus.SUSPENDED, "suspended_until": until},
        )
        if hold is not None:
            return hold
        hold = await self.get(hold_id=hold_id)
        raise HoldNotSuspendable(hold_id, hold.status)

    async def resume(self, *, hold_id: int) -> Hold:
        """suspended -> waiting, in the place it kept; a copy on the shelf is looked for
        again at once (as for a new hold). A waiting hold is answered as it is (a repeat);
        one that is not in the queue is a 409."""
        hold = await self.holds.change(
            hold_id=hold_id,
            allowed_from=(HoldStatus.SUSPENDED,),
            values={"status": HoldStatus.WAITING, "suspended_until": None},
        )
        if hold is not None:
            await events.hold_placed(self.session, hold_id=hold.id, book_id=hold.book_id)
            return hold
        hold = await self.get(hold_id=hold_id)
        if hold.status is HoldStatus.WAITING:
            return hold
        raise HoldNotSuspended(hold_id, hold.status)

    async def resume_due(self, *, limit: int) -> int:
        """Suspended holds whose resume date has come (UTC) wait again; one batch."""
        resumed = await self.holds.resume_due(day=datetime.now(UTC).date(), limit=limit)
        for hold in resumed:
            await events.hold_placed(self.session, hold_id=hold.id, book_id=hold.book_id)
        return len(resumed)

    async def queue(self, *, book_id: int) -> list[Hold]:
        return await self.holds.queue(book_id=book_id)

    async def reorder(self, *, book_id: int, hold_ids: list[int]) -> list[Hold]:
        """Put the book's queue in the order of `hold_ids`, which names every hold in it
        (waiting and suspended): anything else was made from an out-of-date view (409).

        The holds swap the ranks the queue has, so holds placed later still come after
        them. Copies handed over meanwhile wait for this to commit (`lock_queue`).
        """
        repeats = {
            index: hold_id for index, hold_id in enumerate(hold_ids) if hold_id in hold_ids[:index]
        }
        if repeats:
            raise RepeatedHolds(repeats)
        await self.holds.lock_queue(book_id=book_id)
        queue = await self.holds.queue(book_id=book_id, lock=True)
        current = {hold.id for hold in queue}
        if current != set(hold_ids):
            raise QueueChanged(
                book_id,
                missing=sorted(current - set(hold_ids)),
                unknown=[hold_id for hold_id in hold_ids if hold_id not in current],
            )
        ranks = sorted(hold.queue_rank for hold in queue)
        await self.holds.rerank(ranks=dict(zip(hold_ids, ranks, strict=True)))
        return await self.holds.queue(book_id=book_id)

    async def cancel_all_of(self, *, member_id: int) -> None:
        for hold in await self.holds.open_holds_of(member_id=member_id):
            await self.cancel(hold_id=hold.id)

    async def check_out(
        self, *, hold_id: int, override: Override | None = None
    ) -> tuple[Borrow, bool]:
        """ready -> fulfilled: the copy set aside becomes the member's loan, active at once.

        Returns the loan and whether it was made now (a repeat returns the same loan).
        """
        hold = await self.get(hold_id=hold_id)
        if hold.status is HoldStatus.FULFILLED and hold.borrow_id is not None:
            borrow = await self.borrows.get(borrow_id=hold.borrow_id)
            assert borrow is not None
            return borrow, False
        if hold.status is not HoldStatus.READY:
            raise HoldNotReady(hold_id, hold.status)
        member = await self.members.get(member_id=hold.member_id)
        if member is not None:
            await in_good_standing(
                self.members, member, action=OverrideAction.CHECKOUT, override=override
            )
        policy = await self.resolver.for_member(member_id=hold.member_id, item_type=hold.item_type)
        borrow = await open_loan(
            self.session,
            member_id=hold.member_id,
            book_id=hold.book_id,
            item_type=hold.item_type,
            policy=policy,
            values={
                "book_title": hold.book_title,
                "book_author": hold.book_author,
                "status": BorrowStatus.ACTIVE,
                "borrowed_at": func.now(),
                "due_at": due_date(func.now(), policy.loan_period),
                "hold_id": hold.id,
            },
        )
        fulfilled = await self.holds.change(
            hold_id=hold_id,
            allowed_from=(HoldStatus.READY,),
            values={
                "status": HoldStatus.FULFILLED,
                "borrow_id": borrow.id,
                "closed_at": func.now(),
            },
        )
        if fulfilled is None:
            # Cancelled or expired since it was read; the loan above rolls back with this.
            current = await self.get(hold_id=hold_id)
            raise HoldNotReady(hold_id, current.status)
        await events.hold_checked_out(
            self.session, hold_id=hold.id, borrow_id=borrow.id, book_id=hold.book_id
        )
        return borrow, True

    async def fill_from_shelf(self, *, hold_id: int) -> Hold:
        """waiting -> ready with a copy a worker took off the shelf for `hold:ID`.

        A hold that is ready or fulfilled already has its copy (a repeat, or a returned
        copy that reached it first): answered as it is. A cancelled or expired one answers
        409, and the worker passes the copy on.
        """
        hold = await self.holds.change(
            hold_id=hold_id,
            allowed_from=(HoldStatus.WAITING,),
            values=self._ready(copy_from=shelf_copy(hold_id)),
        )
        if hold is not None:
            await self._tell_ready(hold)
            return hold
        hold = await self.get(hold_id=hold_id)
        if hold.status in (HoldStatus.READY, HoldStatus.FULFILLED):
            # It has its copy (from the shelf earlier, or handed over from a return).
            return hold
        raise IllegalTransition(f"Hold {hold_id}", current=hold.status, target=HoldStatus.READY)

    async def hand_over(self, *, book_id: int, from_reference: str) -> Hold | None:
        """Set the copy out under `from_reference` aside for the first waiting hold of the
        book; None when nobody waits. A repeat answers the hold it went to."""
        if (hold := await self.holds.handed(from_reference=from_reference)) is not None:
            return hold
        await self.holds.lock_queue(book_id=book_id)
        try:
            async with self.session.begin_nested():
                hold = await self.holds.take_first_waiting(
                    book_id=book_id, from_reference=from_reference
                )
        except IntegrityError:
            # The same copy handed over by a concurrent repeat of this call.
            return await self.holds.handed(from_reference=from_reference)
        if hold is not None:
            await self._tell_ready(hold)
        return hold

    async def expire_uncollected(self, *, limit: int) -> int:
        """Ready holds past their pickup deadline expire; each one's copy moves on."""
        expired = await self.holds.expire_uncollected(limit=limit)
        for hold in expired:
            await events.copy_freed(self.session, book_id=hold.book_id, reference=hold.reference)
        return len(expired)

    def _ready(self, *, copy_from: str) -> dict[str, object]:
        """What readying a hold sets; its pickup window counts open days only."""
        return {
            "status": HoldStatus.READY,
            "copy_from": copy_from,
            "ready_at": func.now(),
            "pickup_by": pickup_deadline(func.now()),
        }

    async def _tell_ready(self, hold: Hold) -> None:
        """The "your copy is ready" notice, at once rather than at the next sweep."""
        assert hold.pickup_by is not None
        member = await self.members.get(member_id=hold.member_id)
        if member is not None:
            await self.notices.hold_ready(hold_id=hold.id, member=member, deadline=hold.pickup_by)
