"""The reconciler: every few seconds, orders settles the pending orders and borrows whose
job is overdue (announced again, or given up after the last attempt; see orders.saga), and
announces again the stock releases of cancelled orders that no job reported done.

The jobs themselves are made safe against loss by the pool and its sweep; this covers what
no job can: one that failed for good, or an order whose job was never enqueued.
"""

from __future__ import annotations

import logging
from typing import Any

from workers import clients, metrics
from workers.config import get_settings
from workers.periodic import Periodic

logger = logging.getLogger(__name__)

# A run that keeps finding full batches stops here and leaves the rest to the next run.
MAX_ROUNDS = 50


def reconcile(payload: dict[str, Any]) -> str:
    RECONCILE.schedule_next()
    totals = {(saga, action): 0 for saga in metrics.SAGAS for action in metrics.SETTLE_ACTIONS}
    for _ in range(MAX_ROUNDS):
        reconciled = clients.orders().reconcile()
        for saga, settled in (
            ("order", reconciled.orders),
            ("borrow", reconciled.borrows),
            ("release", reconciled.releases),
        ):
            for action in metrics.SETTLE_ACTIONS:
                count = getattr(settled, action)
                metrics.SAGA_ROWS_SETTLED.labels(saga, action).inc(count)
                totals[saga, action] += count
        if not reconciled.more:
            break
    summary = ", ".join(f"{saga}s {action} {n}" for (saga, action), n in totals.items())
    if any(totals.values()):
        logger.warning("reconciler: %s", summary)
    return summary


RECONCILE = Periodic(
    name="reconcile",
    function=f"{__name__}.{reconcile.__name__}",
    interval_s=lambda: get_settings().reconcile_interval_s,
    timeout_s=60,
)
