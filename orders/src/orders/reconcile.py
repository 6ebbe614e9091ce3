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
        """One batch of stalled orders and one of stalled borrows, re-driven or given up."""
        policy = state.redrive_policy
        orders = await service.settle_stalled(policy=policy)
        borrows = await loans.settle_stalled(policy=policy)
        full = policy.batch_size
        return Reconciled(
            orders=orders,
            borrows=borrows,
            more=full in (orders.redriven + orders.given_up, borrows.redriven + borrows.given_up),
        )
