"""The numbers lending runs by, in one place.

Today one policy, read from the settings, applies to every member and book. The services
only ever ask a `LendingPolicy` for these numbers, so policies per member category and
item type can be resolved per loan and handed to them in its place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from orders.config import Settings

DAY = timedelta(days=1)


@dataclass(frozen=True)
class LendingPolicy:
    loan_period: timedelta
    max_renewals: int
    # A loan overdue by more than this can no longer be renewed.
    renew_grace: timedelta
    late_fee_per_day: Decimal
    late_fee_cap: Decimal
    hold_pickup: timedelta
    due_soon: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> LendingPolicy:
        return cls(
            loan_period=timedelta(days=settings.loan_period_days),
            max_renewals=settings.loan_max_renewals,
            renew_grace=timedelta(days=settings.loan_renew_grace_days),
            late_fee_per_day=settings.late_fee_per_day,
            late_fee_cap=settings.late_fee_cap,
            hold_pickup=timedelta(days=settings.hold_pickup_days),
            due_soon=timedelta(days=settings.due_soon_days),
        )

    def late_fee(self, *, due_at: datetime, returned_at: datetime) -> Decimal:
        """Per day late, each started day counting in full, up to the cap; 0.00 on time."""
        days_late = math.ceil((returned_at - due_at) / DAY) if returned_at > due_at else 0
        return min(self.late_fee_per_day * days_late, self.late_fee_cap).quantize(Decimal("0.01"))
