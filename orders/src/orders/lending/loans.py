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
from orders.lending import events, ledger
from orders.lending.errors import (
    AlreadyBorrowed,
    BorrowNotFound,
    HoldLimitReached,
    KindLimitReached,
    LoanLimitReached,
    MemberBlocked,
    NotLendable,
    NotLendableByPolicy,
    OwesTooMuch,
    PastFinalNotice,
    RenewalRefused,
    TooManyOverdue,
    UnknownBook,
    UnknownMember,
)
from orders.lending.models import (
    Borrow,
    BorrowStatus,
    Hold,
    HoldStatus,
    LedgerKind,
    Member,
    MemberStatus,
    OverrideAction,
)
from orders.lending.overrides import Override
from orders.lending.policy import LendingPolicy, PolicyResolver
from orders.lending.repository import (
    LOAN_PERIOD,
    OPEN_HOLD,
    BorrowRepository,
    HoldRepository,
    MemberRepository,
    due_date,
)
from orders.lending.rule_repository import ClosedDayRepository
from orders.lending.schemas import BorrowCreate, BorrowRead, DryRunRead
from orders.metrics import (
    LIBRARY_ACTIVATION_SECONDS,
    LIBRARY_BORROWS,
    LIBRARY_LOANS_ACTIVATED,
    LIBRARY_RETURNS,
)
from orders.ordering.schemas import BuyInstead, money, utc
from orders.problems import Rule
from orders.saga import RedrivePolicy, Settled, given_up_reason
from servicekit.api_keys import ApiKey
from servicekit.database import after_commit, rolled_back
from servicekit.problems import ProblemError

BORROWS_PATH = "/v1/borrows"


async def active_member(
    members: MemberRepository,
    member_id: int,
    *,
    action: OverrideAction,
    override: Override | None = None,
) -> Member:
    """The member, if they may borrow: 422 when unknown, 403 when blocked."""
    member = await members.get(member_id=member_id)
    if member is None:
        raise UnknownMember(member_id)
    if member.status is MemberStatus.BLOCKED:
        raise MemberBlocked(member_id)
    await in_good_standing(members, member, action=action, override=override)
    return member


async def in_good_standing(
    members: MemberRepository,
    member: Member,
    *,
    action: OverrideAction,
    override: Override | None = None,
) -> None:
    """403 when the member has more loans overdue than their category allows, owes more
    than its `max_balance`, or (where the category says so) has a loan out after its final
    overdue notice; with a librarian's override, the action goes through and the override
    is recorded."""
    standing = await members.standing(member=member)
    block: PastFinalNotice | TooManyOverdue | OwesTooMuch | None = None
    if standing.block_after_final_notice and standing.past_final_notice:
        block = PastFinalNotice(member.id, current=standing.past_final_notice)
    elif standing.overdue > standing.max_overdue:
        block = TooManyOverdue(member.id, limit=standing.max_overdue, current=standing.overdue)
    elif member.balance > standing.max_balance:
        block = OwesTooMuch(
            member.id, limit=money(standing.max_balance), current=money(member.balance)
        )
    if block is None:
        return
    if override is None:
        raise block
    assert block.rule is not None
    await override.let_through(members.session, member_id=member.id, action=action, rule=block.rule)


async def catalog_book(books: BooksClient, book_id: int, *, where: str = "body") -> BookSnapshot:
    """The book as the catalog has it now: 422 when gone."""
    book = (await books.active_books(book_ids=[book_id])).get(book_id)
    if book is None:
        raise UnknownBook(book_id, where=where)
    return book


def shop_offer(book: BookSnapshot) -> BuyInstead | None:
    """What a member refused a book can buy instead, if the shop has it in stock."""
    return BuyInstead.offer(book_id=book.id, price=book.price, stock=book.stock)


async def lendable_book(
    books: BooksClient, resolver: PolicyResolver, *, member: Member, book_id: int
) -> tuple[BookSnapshot, LendingPolicy]:
    """The book as the catalog has it now, and the policy it is lent to the member under:
    422 when gone, 409 when it has no copies to lend or its policy lends it not."""
    book = await catalog_book(books, book_id)
    if not book.copies_total:
        raise NotLendable(book_id).offering(shop_offer(book))
    policy = await resolver.resolve(member_category=member.category, item_type=book.format)
    if not policy.lendable:
        raise NotLendableByPolicy(book_id, item_type=book.format, policy_id=policy.id).offering(
            shop_offer(book)
        )
    return book, policy


async def open_loan(
    session: AsyncSession,
    *,
    member_id: int,
    book_id: int,
    item_type: str,
    policy: LendingPolicy,
    values: dict[str, Any],
) -> Borrow:
    """A new borrow counted against the member's limits, enforced by the database.

    The total is one conditional UPDATE of the member's row (`take_loan_slot`). That
    UPDATE also locks the row until the transaction ends, so the loans of a kind, counted
    after it, cannot change under the count: a concurrent borrow of the same member waits
    on the row, then counts this one.
    """
    members = MemberRepository(session)
    borrows = BorrowRepository(session)
    if not await members.take_loan_slot(member_id=member_id):
        member = await members.get(member_id=member_id)
        if member is None:
            raise UnknownMember(member_id)
        if member.status is MemberStatus.BLOCKED:
            raise MemberBlocked(member_id)
        raise LoanLimitReached(member_id, limit=member.loan_limit, current=member.loans_out)
    if policy.max_loans is not None:
        of_kind = await borrows.open_of_kind(member_id=member_id, item_type=item_type)
        if of_kind >= policy.max_loans:
            raise KindLimitReached(
                member_id,
                item_type=item_type,
                policy_id=policy.id,
                limit=policy.max_loans,
                current=of_kind,
            )
    borrow = await borrows.add(
        {"member_id": member_id, "book_id": book_id, "item_type": item_type, **values}
    )
    if borrow is None:
        raise AlreadyBorrowed(member_id, book_id)
    return borrow


async def within_hold_cap(
    session: AsyncSession, *, member_id: int, item_type: str, policy: LendingPolicy
) -> None:
    """409 when the member has as many open holds of this item type as the policy allows.

    The member's row is locked first, until the transaction ends: of two holds placed at
    once at the cap, the second waits for the first, then counts it and is refused.
    """
    if policy.max_holds is None:
        return
    await MemberRepository(session).lock(member_id=member_id)
    current = await HoldRepository(session).open_of_kind(member_id=member_id, item_type=item_type)
    if current >= policy.max_holds:
        raise HoldLimitReached(
            member_id,
            item_type=item_type,
            policy_id=policy.id,
            limit=policy.max_holds,
            current=current,
        )


class LoanService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        books: BooksClient,
        idempotency_store: IdempotencyStore | None,
    ) -> None:
        self.session = session
        self.members = MemberRepository(session)
        self.borrows = BorrowRepository(session)
        self.holds = HoldRepository(session)
        self.resolver = PolicyResolver(session)
        self.closed_days = ClosedDayRepository(session)
        self.books = books
        self.idempotency_store = idempotency_store

    async def request(
        self,
        *,
        data: BorrowCreate,
        idempotency_key: str | None,
        client: ApiKey,
        override: Override | None = None,
    ) -> Answer:
        """Ask for a copy once per key; a retry with the same key gets the first answer
        (the same key with another override is another request)."""
        path = BORROWS_PATH if override is None else f"{BORROWS_PATH}?override={override.reason}"
        return await respond_once(
            self.idempotency_store,
            self.session,
            api_key_id=client.id,
            key=idempotency_key,
            fingerprint=idempotency.fingerprint(b"POST", path.encode(), msgspec.json.encode(data)),
            respond=partial(self._request, data, override),
            count=lambda outcome: LIBRARY_BORROWS.labels(outcome).inc(),
        )

    async def _open(
        self, data: BorrowCreate, override: Override | None
    ) -> tuple[Borrow, BookSnapshot, LendingPolicy]:
        """The pending borrow, after every check."""
        # Cheap refusals first, before the call to books.
        member = await active_member(
            self.members, data.member_id, action=OverrideAction.BORROW, override=override
        )
        book, policy = await lendable_book(
            self.books, self.resolver, member=member, book_id=data.book_id
        )
        borrow = await open_loan(
            self.session,
            member_id=data.member_id,
            book_id=data.book_id,
            item_type=book.format,
            policy=policy,
            values={
                "book_title": book.title,
                "book_author": book.author,
                "book_price": book.price,
                "status": BorrowStatus.PENDING,
            },
        )
        return borrow, book, policy

    async def try_request(
        self, *, data: BorrowCreate, override: Override | None = None
    ) -> DryRunRead:
        """What borrowing would do now, every check run and nothing kept (no idempotency
        key is claimed either)."""
        async with rolled_back(self.session):
            _borrow, book, policy = await self._open(data, override)
        preview = DryRunRead(
            dry_run=True,
            action="borrow",
            outcome="",
            policy_id=policy.id,
            member_id=data.member_id,
            book_id=data.book_id,
            overrides=None if override is None else override.used_on,
        )
        if book.copies_available:
            preview.outcome = "A copy is on the shelf: it would be lent until due_at."
            preview.due_at = await self.borrows.due_date_from_now(period=policy.loan_period)
        elif policy.holds_allowed:
            try:
                async with rolled_back(self.session):
                    await within_hold_cap(
                        self.session,
                        member_id=data.member_id,
                        item_type=book.format,
                        policy=policy,
                    )
                preview.outcome = "No copy is free: the request would become a hold in the queue."
            except HoldLimitReached as refusal:
                preview.outcome = (
                    f"No copy is free and the request would be rejected: {refusal.detail}"
                )
        else:
            preview.outcome = (
                "No copy is free and the policy allows no holds: the request would be rejected."
            )
        return preview

    async def _request(
        self, data: BorrowCreate, override: Override | None, claim: Claimed | None
    ) -> StoredResponse:
        try:
            borrow, _book, _policy = await self._open(data, override)
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

    @staticmethod
    def now() -> datetime:
        """What `overdue` is judged against in answers (the statements use `now()`)."""
        return datetime.now(UTC)

    async def give_back(self, *, borrow_id: int) -> Borrow:
        """active or lost -> returned; the copy goes to the next hold or the shelf.

        An active loan is fined for lateness (charged to the member's ledger) and frees
        its slot of the member's loan limit. A lost loan was fined and freed its slot when
        it was declared lost: its replacement charge is refunded instead.

        A repeat returns the same loan and changes nothing.
        """
        borrow = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.ACTIVE, BorrowStatus.LOST),
            values={"status": BorrowStatus.RETURNED, "returned_at": func.now()},
        )
        if borrow is None:
            return await self._unchanged(borrow_id, target=BorrowStatus.RETURNED)
        if borrow.lost_at is not None:
            await ledger.refund_replacement(self.session, borrow)
        else:
            borrow = await self._fine(borrow)
            await self.members.give_back_loan_slot(member_id=borrow.member_id)
        await events.copy_freed(self.session, book_id=borrow.book_id, reference=borrow.reference)
        after_commit(self.session, LIBRARY_RETURNS.labels(str(bool(borrow.late_fee)).lower()).inc)
        return borrow

    async def _fine(self, borrow: Borrow) -> Borrow:
        """The returned loan with its late fee, charged (closed days not counted)."""
        assert borrow.due_at is not None
        assert borrow.returned_at is not None
        policy = await self.policy_of(borrow)
        closed = await self.closed_days.between(
            first=borrow.due_at.astimezone(UTC).date(),
            last=borrow.returned_at.astimezone(UTC).date(),
        )
        fee = policy.late_fee(
            due_at=borrow.due_at,
            returned_at=borrow.returned_at,
            book_price=borrow.book_price,
            closed_days=closed,
        )
        fined = await self.borrows.change(
            borrow_id=borrow.id, allowed_from=(BorrowStatus.RETURNED,), values={"late_fee": fee}
        )
        assert fined is not None
        await ledger.charge(self.session, fined, kind=LedgerKind.FINE, amount=fee)
        return fined

    async def policy_of(self, borrow: Borrow) -> LendingPolicy:
        """The policy a loan runs by now: its member's category, its book's item type."""
        return await self.resolver.for_member(
            member_id=borrow.member_id, item_type=borrow.item_type
        )

    async def renew(self, *, borrow_id: int, override: Override | None = None) -> Borrow:
        """Push the due date back one loan period, within the rules (each refusal says which)."""
        borrow = await self.get(borrow_id=borrow_id)
        now = self.now()
        if borrow.status is not BorrowStatus.ACTIVE:
            raise RenewalRefused(
                f"Borrow {borrow_id} is {borrow.status}; only an active loan can be renewed.",
                rule=Rule(name="loan_status"),
            )
        assert borrow.due_at is not None
        member = await self.members.get(member_id=borrow.member_id)
        if member is not None:
            await in_good_standing(
                self.members, member, action=OverrideAction.RENEW, override=override
            )
        policy = await self.policy_of(borrow)
        if borrow.renewals >= policy.max_renewals:
            raise RenewalRefused(
                f"Loan {borrow_id} was renewed {borrow.renewals} time(s), the most policy "
                f"{policy.id} allows; return the book, then borrow it again.",
                rule=Rule(
                    name="max_renewals",
                    policy_id=policy.id,
                    limit=policy.max_renewals,
                    current=borrow.renewals,
                ),
            )
        if borrow.due_at < now - policy.renew_grace:
            raise RenewalRefused(
                f"Loan {borrow_id} is overdue since {borrow.due_at:%Y-%m-%d}; policy "
                f"{policy.id} renews a loan at most {policy.renew_grace.days} day(s) "
                "overdue, return the book.",
                rule=Rule(
                    name="renew_grace",
                    policy_id=policy.id,
                    limit=policy.renew_grace.days,
                    current=(now - borrow.due_at).days,
                ),
            )
        if await self.holds.others_waiting(book_id=borrow.book_id, member_id=borrow.member_id):
            raise RenewalRefused(
                f"Another member is waiting for book {borrow.book_id}; "
                "the loan cannot be renewed, return the book by its due date.",
                rule=Rule(name="holds_waiting"),
            )
        renewed = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.ACTIVE,),
            values={
                "due_at": due_date(Borrow.due_at, policy.loan_period),
                "renewals": Borrow.renewals + 1,
            },
            # The checks above, again in the statement that decides: a concurrent renewal
            # or a hold placed meanwhile makes this one refuse.
            where=(
                Borrow.renewals == borrow.renewals,
                Borrow.due_at >= func.now() - policy.renew_grace,
                ~exists().where(
                    Hold.book_id == Borrow.book_id,
                    Hold.status.in_(OPEN_HOLD),
                    Hold.member_id != Borrow.member_id,
                ),
            ),
        )
        if renewed is None:
            raise RenewalRefused(
                f"Loan {borrow_id} changed while it was being renewed; fetch it and try again.",
                rule=Rule(name="concurrent_change"),
            )
        return renewed

    async def try_renew(self, *, borrow_id: int, override: Override | None = None) -> DryRunRead:
        """What renewing would do now; nothing kept."""
        async with rolled_back(self.session):
            renewed = await self.renew(borrow_id=borrow_id, override=override)
            policy = await self.policy_of(renewed)
            preview = self._preview("renew", renewed, policy, due_at=renewed.due_at)
        preview.overrides = None if override is None else override.used_on
        preview.outcome = "The loan would be renewed: due_at is its new due date."
        return preview

    async def try_give_back(self, *, borrow_id: int) -> DryRunRead:
        """What returning would do now (the fine, were it returned now); nothing kept."""
        async with rolled_back(self.session):
            was = await self.get(borrow_id=borrow_id)
            already, lost = was.status is BorrowStatus.RETURNED, was.status is BorrowStatus.LOST
            returned = await self.give_back(borrow_id=borrow_id)
            policy = await self.policy_of(returned)
            preview = self._preview("return", returned, policy, due_at=returned.due_at)
            fee = returned.late_fee
        preview.late_fee = None if fee is None else money(fee)
        preview.outcome = (
            "The loan was returned already: nothing would change."
            if already
            else "The lost loan would be returned: its replacement charge is refunded (the "
            "processing fee and the fine stay); the copy goes to the first hold waiting, or "
            "back on the shelf."
            if lost
            else "The loan would be returned with late_fee; the copy goes to the first hold "
            "waiting, or back on the shelf."
        )
        return preview

    @staticmethod
    def _preview(
        action: str, borrow: Borrow, policy: LendingPolicy, *, due_at: datetime | None
    ) -> DryRunRead:
        return DryRunRead(
            dry_run=True,
            action=action,
            outcome="",
            policy_id=policy.id,
            member_id=borrow.member_id,
            book_id=borrow.book_id,
            due_at=None if due_at is None else utc(due_at),
        )

    async def activate(self, *, borrow_id: int) -> Borrow:
        """pending -> active once a worker has checked a copy out; a repeat is harmless."""
        borrow = await self.borrows.change(
            borrow_id=borrow_id,
            allowed_from=(BorrowStatus.PENDING,),
            values={
                "status": BorrowStatus.ACTIVE,
                "borrowed_at": func.now(),
                "due_at": due_date(func.now(), LOAN_PERIOD),
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
        policy = await self.policy_of(borrow)
        if not policy.holds_allowed:
            return await self.reject(
                borrow_id=borrow_id,
                reason=f"No copy was free, and policy {policy.id} does not let this member "
                f"hold books of item type {borrow.item_type!r}.",
            )
        try:
            await within_hold_cap(
                self.session,
                member_id=borrow.member_id,
                item_type=borrow.item_type,
                policy=policy,
            )
        except HoldLimitReached as refusal:
            return await self.reject(
                borrow_id=borrow_id,
                reason=f"No copy was free, and no hold could be placed: {refusal.detail}",
            )
        hold = await self.holds.add(
            {
                "member_id": borrow.member_id,
                "book_id": borrow.book_id,
                "book_title": borrow.book_title,
                "book_author": borrow.book_author,
                "item_type": borrow.item_type,
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
