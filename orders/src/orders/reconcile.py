"""Internal HTTP API of the reconciler: settles the orders and borrows that wait too long.

The workers call it on a schedule (`workers.reconcile`); see `orders.saga` for the rule.
Not in the public OpenAPI, and every call must carry the service key.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from msgspec import Meta

from orders.lending.controllers import LENDING_DEPENDENCIES
from orders.lending.loans import LoanService
from orders.ordering.controllers import provide_order_service
from orders.ordering.service import OrderService
from orders.saga import Settled
from orders.security import require_service_key


class Reconciled(msgspec.Struct, kw_only=True):
    orders: Settled
    borrows: Settled
    releases: Annotated[
        Settled, Meta(description="Stock releases of cancelled or given-up orders.")
    ]
    more: Annotated[bool, Meta(description="A batch was full: call again.")]


class ReconcileController(Controller):
    path = "/internal/v1/reconcile"
    include_in_schema = False
    guards = [require_service_key]
    dependencies = {
        "service": Provide(provide_order_service, sync_to_thread=False),
        "loans": LENDING_DEPENDENCIES["loans"],
    }

    @post("", status_code=200)
    async def reconcile(
        self,
        service: NamedDependency[OrderService],
        loans: NamedDependency[LoanService],
        state: State,
    ) -> Reconciled:
        """One batch each of stalled orders, borrows and stock releases, re-driven (or
        given up, for orders and borrows)."""
        policy = state.redrive_policy
        orders = await service.settle_stalled(policy=policy)
        borrows = await loans.settle_stalled(policy=policy)
        releases = await service.settle_stalled_releases(policy=policy)
        return Reconciled(
            orders=orders,
            borrows=borrows,
            releases=releases,
            more=any(
                settled.redriven + settled.given_up == policy.batch_size
                for settled in (orders, borrows, releases)
            ),
        )
