"""The numbers one loan or hold runs by: a lending policy, resolved for its member's
category and its book's item type (see `orders.lending.policies`)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.models import Policy
from orders.lending.rule_repository import PolicyRepository

DAY = timedelta(days=1)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class LendingPolicy:
    id: int
    lendable: bool
    loan_period: timedelta
    max_renewals: int
    # A loan overdue by more than this can no longer be renewed.
    renew_grace: timedelta
    # Loans of this kind a member may have at once; None: only their total limit.
    max_loans: int | None
    fine_per_day: Decimal
    # None: the book's price.
    fine_cap: Decimal | None
    # A loan returned within this many days after its due date is not fined.
    grace_days: int
    holds_allowed: bool
    hold_pickup: timedelta
    # A loan this long overdue is lost; None: never.
    lost_after: timedelta | None
    lost_processing_fee: Decimal
    # Open holds (waiting, suspended or ready) of this kind a member may have; None: no cap.
    max_holds: int | None

    @classmethod
    def of(cls, row: Policy) -> LendingPolicy:
        return cls(
            id=row.id,
            lendable=row.lendable,
            loan_period=timedelta(days=row.loan_period_days),
            max_renewals=row.max_renewals,
            renew_grace=timedelta(days=row.renew_grace_days),
            max_loans=row.max_loans,
            fine_per_day=row.fine_per_day,
            fine_cap=row.fine_cap,
            grace_days=row.grace_days,
            holds_allowed=row.holds_allowed,
            hold_pickup=timedelta(days=row.hold_pickup_days),
            lost_after=None if row.lost_after_days is None else timedelta(days=row.lost_after_days),
            lost_processing_fee=row.lost_processing_fee,
            max_holds=row.max_holds,
        )

    def late_fee(
        self,
        *,
        due_at: datetime,
        returned_at: datetime,
        book_price: Decimal | None,
        closed_days: Collection[date] = (),
    ) -> Decimal:
        """Per day late, each started day counting in full, up to the cap; 0.00 on time
        or within the grace days. A day late that starts on a closed day (UTC) is not
        counted, for the fine or the grace. A cap of the book's price, for a loan that
        kept no price (made before loans kept one), caps nothing."""
        days_late = self.days_late(due_at=due_at, until=returned_at, closed_days=closed_days)
        if days_late <= self.grace_days:
            return Decimal("0.00")
        fee = self.fine_per_day * days_late
        cap = self.fine_cap if self.fine_cap is not None else book_price
        return (fee if cap is None else min(fee, cap)).quantize(CENT)

    @staticmethod
    def days_late(*, due_at: datetime, until: datetime, closed_days: Collection[date]) -> int:
        """The started days from `due_at` to `until`, but those starting on a closed day.
        The n-th started day begins on the n-th date from the due date's (UTC), so the
        closed ones are the closed dates in that range."""
        started = math.ceil((until - due_at) / DAY) if until > due_at else 0
        if not started:
            return 0
        first = due_at.astimezone(UTC).date()
        last = first + timedelta(days=started - 1)
        return started - sum(1 for day in closed_days if first <= day <= last)


class PolicyResolver:
    """Which policy applies to a member category (or a member) and an item type: one
    indexed-or-smaller query each time, so a change applies at once in every process."""

    def __init__(self, session: AsyncSession) -> None:
        self.policies = PolicyRepository(session)

    async def candidates(self, *, member_category: str, item_type: str) -> Sequence[Policy]:
        found = await self.policies.matching(member_category=member_category, item_type=item_type)
        # The migration makes the default and deleting it is refused, so one matches.
        assert found, "the default lending policy is missing"
        return found

    async def resolve(self, *, member_category: str, item_type: str) -> LendingPolicy:
        found = await self.candidates(member_category=member_category, item_type=item_type)
        return LendingPolicy.of(found[0])

    async def for_member(self, *, member_id: int, item_type: str) -> LendingPolicy:
        found = await self.policies.applying_to(member_id=member_id, item_type=item_type)
        assert found is not None, "the default lending policy is missing"
        return LendingPolicy.of(found)
