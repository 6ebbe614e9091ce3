"""How long will a waiting hold wait? An estimate from the copies out and the queue ahead.

While anyone waits for a book its loans cannot be renewed (`RenewalRefused`), so each copy
out comes back by its due date at the latest (an overdue one: any moment now). A copy set
aside for a ready hold is taken at once for one loan period. Each hold ahead of this one
then takes the first copy to come back for one loan period; this hold gets the next one.
Members who return early, or ready holds that expire, only make the wait shorter.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from orders.ordering.schemas import BuyInstead


def estimate_available_at(
    *,
    now: datetime,
    due_dates: Iterable[datetime],
    ready_holds: int,
    ahead: int,
    loan_period: timedelta,
) -> datetime:
    """When a copy should come to the hold that has `ahead` waiting holds before it."""
    free_at = [max(now, due) for due in due_dates] + [now + loan_period] * ready_holds
    if not free_at:
        # No copy out and none set aside: one is on the shelf, on its way to the queue.
        return now
    heapq.heapify(free_at)
    for _ in range(ahead):
        heapq.heappush(free_at, heapq.heappop(free_at) + loan_period)
    return free_at[0]


@dataclass(frozen=True)
class Outlook:
    """Where a waiting hold stands: its place, when a copy should come, and the offer to
    buy the book instead when that is far off and the shop has it."""

    position: int | None = None
    estimated_available_at: datetime | None = None
    buy_instead: BuyInstead | None = None
