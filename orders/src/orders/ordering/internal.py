"""Internal HTTP API for the workers: the outcome of the stock reservation.

Not in the public OpenAPI, and every call must carry the service key.
"""

from __future__ import annotations

from litestar import Controller, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from orders.http import json_body
from orders.ordering.controllers import OrderIdPath, provide_order_service
from orders.ordering.schemas import OrderRead, OrderReject
from orders.ordering.service import OrderService
from orders.security import require_service_key


class InternalOrderController(Controller):
    path = "/internal/v1/orders"
    include_in_schema = False
    guards = [require_service_key]
    dependencies = {"service": Provide(provide_order_service, sync_to_thread=False)}

    @post("/{order_id:str}/confirm", status_code=200)
    async def confirm_order(
        self, service: NamedDependency[OrderService], order_id: OrderIdPath
    ) -> OrderRead:
        """Confirm a pending order whose stock is reserved; repeating it is harmless."""
        return await service.confirm_order(order_id=order_id)

    @post("/{order_id:str}/stock-released", status_code=204)
    async def stock_released(
        self, service: NamedDependency[OrderService], order_id: OrderIdPath
    ) -> None:
        """The order's stock is back at books (its release job reports it); idempotent."""
        await service.stock_released(order_id=order_id)

    @post("/{order_id:str}/reject", status_code=200, guards=[json_body(OrderReject)])
    async def reject_order(
        self,
        data: JSONBody[OrderReject],
        service: NamedDependency[OrderService],
        order_id: OrderIdPath,
    ) -> OrderRead:
        """Reject a pending order that cannot be fulfilled; a repeat keeps the first reason."""
        return await service.reject_order(order_id=order_id, reason=data.reason, cause=data.cause)
