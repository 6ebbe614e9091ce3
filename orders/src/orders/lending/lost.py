"""Lost items: a loan overdue past its policy's `lost_after_days` is declared lost by the
periodic sweep, and its member charged the overdue fine so far, the book's price and the
policy's processing fee. The copy stays out at books (nobody has it on the shelf); when
it comes back, `LoanService.give_back` refunds the price and passes the copy on."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending import ledger
from orders.lending.models import Borrow, LedgerKind
from orders.lending.policy import LendingPolicy, PolicyResolver
from orders.lending.repository import BorrowRepository, MemberRepository
from orders.lending.rule_repository import ClosedDayRepository
from orders.metrics import LIBRARY_LOANS_LOST
from servicekit.database import after_commit


class LostItems:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.borrows = BorrowRepository(session)
        self.members = MemberRepository(session)
        self.resolver = PolicyResolver(session)
        self.closed_days = ClosedDayRepository(session)

    async def declare(self, *, limit: int) -> int:
        """One bounded batch: loans overdue past their policy's limit become lost and are
        charged; each no longer counts against its member's loan limit."""
        lost = await self.borrows.declare_lost(limit=limit)
        if not lost:
            return 0
        categories = await self.members.categories(member_ids={b.member_id for b in lost})
        closed = await self.closed_days.between(
            first=min(_due(b) for b in lost).astimezone(UTC).date(),
            last=max(_lost(b) for b in lost).astimezone(UTC).date(),
        )
        # Few distinct (category, item type) pairs in a batch: resolve each once.
        policies: dict[tuple[str, str], LendingPolicy] = {}
        charges: list[ledger.LoanCharge] = []
        fees: dict[int, Decimal] = {}
        for borrow in lost:
            key = (categories[borrow.member_id], borrow.item_type)
            if key not in policies:
                policies[key] = await self.resolver.resolve(
                    member_category=key[0], item_type=key[1]
                )
            policy = policies[key]
            fees[borrow.id] = borrow.late_fee = policy.late_fee(
                due_at=_due(borrow),
                returned_at=_lost(borrow),
                book_price=borrow.book_price,
                closed_days=closed,
            )
            charges += [
                ledger.LoanCharge(borrow, LedgerKind.FINE, fees[borrow.id]),
                ledger.LoanCharge(borrow, LedgerKind.LOST_ITEM, borrow.book_price or Decimal(0)),
                ledger.LoanCharge(borrow, LedgerKind.PROCESSING_FEE, policy.lost_processing_fee),
            ]
        await self.borrows.set_late_fees(fees=fees)
        await ledger.charge_many(self.session, charges)
        await self.members.give_back_loan_slots(slots=Counter(borrow.member_id for borrow in lost))
        after_commit(self.session, partial(LIBRARY_LOANS_LOST.inc, len(lost)))
        return len(lost)


def _due(borrow: Borrow) -> datetime:
    assert borrow.due_at is not None
    return borrow.due_at


def _lost(borrow: Borrow) -> datetime:
    assert borrow.lost_at is not None
    return borrow.lost_at
