"""Member accounts: fines charged at return, payments and waivers, one ledger per member.

The ledger is the record and the balance follows it (a trigger adds each entry to the
member's balance in the same transaction), so they cannot disagree. Credits lock the
member row first, so two payments of one debt run one after the other and the second
sees what the first left; the balance's CHECK (never below 0) stands behind that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from orders import idempotency
from orders.errors import IdempotencyKeyInFlight
from orders.idempotency import Answer, Claimed, IdempotencyStore, StoredResponse, respond_once
from orders.lending.errors import CreditExceedsBalance, MemberNotFound, UnknownLoanOfMember
from orders.lending.models import Borrow, BorrowStatus, LedgerEntry, LedgerKind, Member
from orders.lending.repository import BorrowRepository, LedgerRepository, MemberRepository
from orders.lending.schemas import CreditCreate, LedgerEntryRead
from orders.metrics import LIBRARY_CREDITS, LIBRARY_LEDGER_AMOUNT
from orders.ordering.schemas import money
from servicekit.api_keys import ApiKey
from servicekit.database import after_commit
from servicekit.problems import ProblemError

CREDIT_PATHS = {LedgerKind.PAYMENT: "payments", LedgerKind.WAIVER: "waivers"}


def _loan_reason(kind: LedgerKind, borrow: Borrow) -> str:
    """What a loan's charge or refund says in the ledger."""
    title = f"“{borrow.book_title}”"
    assert borrow.due_at is not None
    late = (
        "Overdue until declared lost:" if borrow.status is BorrowStatus.LOST else "Late return of"
    )
    return {
        LedgerKind.FINE: f"{late} {title}, due {borrow.due_at:%Y-%m-%d}",
        LedgerKind.LOST_ITEM: f"Replacement of {title}, lost (due {borrow.due_at:%Y-%m-%d})",
        LedgerKind.PROCESSING_FEE: f"Processing fee for {title}, lost",
        LedgerKind.REFUND: f"{title} came back after it was declared lost: replacement refunded",
    }[kind]


async def charge(
    session: AsyncSession, borrow: Borrow, *, kind: LedgerKind, amount: Decimal
) -> None:
    """A charge of a loan in its member's ledger (a fine, a lost item and its fee): at
    most one of each kind per loan, by unique index; nothing when `amount` is 0."""
    await charge_many(session, [LoanCharge(borrow, kind, amount)])


@dataclass(frozen=True)
class LoanCharge:
    borrow: Borrow
    kind: LedgerKind
    amount: Decimal


async def charge_many(session: AsyncSession, charges: Sequence[LoanCharge]) -> None:
    """Loans' charges in one statement (the sweep's batches charge hundreds at once);
    those of 0 are left out."""
    due = [charge for charge in charges if charge.amount > 0]
    if not due:
        return
    await LedgerRepository(session).add_many(
        [
            {
                "member_id": charge.borrow.member_id,
                "kind": charge.kind,
                "amount": charge.amount,
                "borrow_id": charge.borrow.id,
                "reason": _loan_reason(charge.kind, charge.borrow),
            }
            for charge in due
        ]
    )
    for kind in {charge.kind for charge in due}:
        total = sum(charge.amount for charge in due if charge.kind is kind)
        after_commit(session, partial(LIBRARY_LEDGER_AMOUNT.labels(kind).inc, float(total)))


async def refund_replacement(session: AsyncSession, borrow: Borrow) -> Decimal:
    """Give back a lost loan's replacement charge, now its copy is back (the processing
    fee stays). The member may end in credit. Returns the amount refunded."""
    ledger = LedgerRepository(session)
    charged = await ledger.loan_charge(borrow_id=borrow.id, kind=LedgerKind.LOST_ITEM)
    if not charged:
        return Decimal("0.00")
    await ledger.add(
        {
            "member_id": borrow.member_id,
            "kind": LedgerKind.REFUND,
            "amount": -charged,
            "borrow_id": borrow.id,
            "reason": _loan_reason(LedgerKind.REFUND, borrow),
        }
    )
    after_commit(
        session, partial(LIBRARY_LEDGER_AMOUNT.labels(LedgerKind.REFUND).inc, float(charged))
    )
    return charged


class LedgerService:
    def __init__(self, session: AsyncSession, *, idempotency_store: IdempotencyStore | None):
        self.session = session
        self.ledger = LedgerRepository(session)
        self.members = MemberRepository(session)
        self.borrows = BorrowRepository(session)
        self.idempotency_store = idempotency_store

    async def statement(
        self, *, member_id: int, limit: int, offset: int
    ) -> tuple[Member, list[tuple[LedgerEntry, Decimal]], int]:
        """The member (with their balance), a page of their ledger, and its size."""
        member = await self.members.get(member_id=member_id)
        if member is None:
            raise MemberNotFound(member_id)
        entries = await self.ledger.page(member_id=member_id, limit=limit, offset=offset)
        return member, entries, await self.ledger.count(member_id=member_id)

    async def credit(
        self,
        *,
        member_id: int,
        kind: LedgerKind,
        data: CreditCreate,
        idempotency_key: str | None,
        client: ApiKey,
    ) -> Answer:
        """Record a payment or waiver once per key; a retry with the same key gets the
        first answer."""
        path = f"/v1/members/{member_id}/{CREDIT_PATHS[kind]}"
        return await respond_once(
            self.idempotency_store,
            self.session,
            api_key_id=client.id,
            key=idempotency_key,
            fingerprint=idempotency.fingerprint(b"POST", path.encode(), msgspec.json.encode(data)),
            respond=partial(self._credit, member_id, kind, data, client),
            count=lambda outcome: LIBRARY_CREDITS.labels(kind, outcome).inc(),
        )

    async def _credit(
        self,
        member_id: int,
        kind: LedgerKind,
        data: CreditCreate,
        client: ApiKey,
        claim: Claimed | None,
    ) -> StoredResponse:
        amount = Decimal(data.amount)
        try:
            member = await self._creditable(member_id, kind, data, amount)
        except ProblemError as exc:
            LIBRARY_CREDITS.labels(kind, exc.type.rpartition("/")[2]).inc()
            raise
        entry = await self.ledger.add(
            {
                "member_id": member_id,
                "kind": kind,
                "amount": -amount,
                "borrow_id": data.borrow_id,
                "reason": data.reason,
                "recorded_by": f"{client.role} key {client.prefix}",
            }
        )
        response = StoredResponse(
            status=201,
            headers={"content-type": "application/json"},
            body=msgspec.json.encode(
                LedgerEntryRead.of(entry, balance_after=member.balance - amount)
            ),
        )
        if claim is not None and not await idempotency.complete(
            self.session, claim, response=response
        ):
            raise IdempotencyKeyInFlight()
        after_commit(self.session, partial(LIBRARY_LEDGER_AMOUNT.labels(kind).inc, float(amount)))
        after_commit(self.session, LIBRARY_CREDITS.labels(kind, "recorded").inc)
        return response

    async def _creditable(
        self, member_id: int, kind: LedgerKind, data: CreditCreate, amount: Decimal
    ) -> Member:
        """The member, locked, if the credit may be recorded: 404, 422 or 409 otherwise."""
        member = await self.ledger.lock_member(member_id=member_id)
        if member is None:
            raise MemberNotFound(member_id)
        if data.borrow_id is not None:
            borrow = await self.borrows.get(borrow_id=data.borrow_id)
            if borrow is None or borrow.member_id != member_id:
                raise UnknownLoanOfMember(member_id, data.borrow_id)
        if amount > member.balance:
            raise CreditExceedsBalance(
                member_id, kind=kind, amount=data.amount, balance=money(member.balance)
            )
        return member
