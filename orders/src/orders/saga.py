"""Settling saga rows that wait too long: the one rule pending orders and borrows follow.

A pending order waits for a worker to reserve its stock, a pending borrow for one to check
a copy out. When that job is lost or gives up, the row would stay pending until an
operator acts. The reconciler (`orders.reconcile`, called by a scheduled workers job)
writes the row's outbox event again instead, so the relay enqueues a fresh job; every step
of both sagas is idempotent, so a row that was only slow still settles once.

Each re-drive waits twice as long as the one before (`stall_after`, then 2x, 4x, ...): while
books is down for minutes, a pending row costs one job per doubling, not one per tick.
After `max_redrives` the row is settled for good: rejected with a reason, and whatever it
may hold (reserved stock, a checked-out copy) is given back by a job of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import ColumnElement, func, literal
from sqlalchemy.orm import InstrumentedAttribute

from orders.config import Settings


@dataclass(frozen=True)
class RedrivePolicy:
    stall_after: timedelta
    max_redrives: int
    batch_size: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> RedrivePolicy:
        return cls(
            stall_after=timedelta(seconds=settings.saga_stall_after_s),
            max_redrives=settings.saga_max_redrives,
        )

    def due(
        self,
        *,
        started_at: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None],
        redrives: InstrumentedAttribute[int],
        redriven_at: InstrumentedAttribute[datetime | None],
    ) -> list[ColumnElement[bool]]:
        """SQL conditions: the row waited `stall_after` times 2^redrives (2^max_redrives at
        most) since it started or was last re-driven. The first, implied by the second,
        lets an index on `started_at` bound the scan."""
        doublings = func.least(redrives, self.max_redrives)
        seconds = literal(self.stall_after.total_seconds()) * func.power(2, doublings)
        # make_interval(years, months, weeks, days, hours, mins, secs)
        wait = func.make_interval(0, 0, 0, 0, 0, 0, seconds)
        return [
            started_at < func.now() - literal(self.stall_after),
            func.coalesce(redriven_at, started_at) < func.now() - wait,
        ]

    def gives_up(self, redrives: int) -> bool:
        return redrives >= self.max_redrives

    def waited(self) -> timedelta:
        """How long a row has been pending, at least, when it is given up."""
        attempts_waited: int = 2 ** (self.max_redrives + 1) - 1
        return self.stall_after * attempts_waited


class Settled(msgspec.Struct, kw_only=True):
    redriven: int
    given_up: int


def given_up_reason(policy: RedrivePolicy, what: str) -> str:
    """The rejection reason of a row the reconciler gave up on."""
    minutes = max(1, round(policy.waited().total_seconds() / 60))
    return (
        f"{what} did not complete within {minutes} min ({policy.max_redrives + 1} attempts);"
        " please try again"
    )
