"""HTTP layer of orders: parse, call one service method, shape the response."""

from __future__ import annotations

from typing import Annotated, cast

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from orders.http import (
    DocumentedOperation,
    IdempotencyKey,
    answer_response,
    json_body,
    paged,
    problem_responses,
)
from orders.ordering.errors import OrderNotFound
from orders.ordering.models import OrderStatus
from orders.ordering.reads import OrderReads
from orders.ordering.schemas import (
    DEFAULT_PAGE_SIZE,
    MAX_ID,
    MAX_PAGE_SIZE,
    OrderCreate,
    OrderPage,
    OrderRead,
)
from orders.ordering.service import OrderService
from orders.security import BEARER, caller, requires
from servicekit.api_keys import SHOPPING

# Declared as a string in route paths so a non-integer id is a 422 with a field error (as
# in books), not a 404 from the router; this annotation does the conversion and bounds.
OrderIdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="Order id.")]


async def provide_order_reads(state: State) -> OrderReads:
    return OrderReads(state.reads)


def provide_order_service(session: NamedDependency[AsyncSession], state: State) -> OrderService:
    return OrderService(
        session, books=state.books_client, idempotency_store=state.idempotency_store
    )


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]
    # A shop's orders are its customers' data: reading them needs its key too.
    guards = [requires(SHOPPING)]
    security = BEARER
    dependencies = {
        "service": Provide(provide_order_service, sync_to_thread=False),
        "reads": Provide(provide_order_reads),
    }

    @post(
        "",
        guards=[json_body(OrderCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(409, 415, 422, 502),
        response_description="The order, placed now or earlier under the same Idempotency-Key.",
        response_headers=[
            ResponseHeader(
                name="Location", description="URL of the order.", documentation_only=True
            )
        ],
    )
    async def create_order(
        self,
        request: Request,  # type: ignore[type-arg]
        data: JSONBody[OrderCreate],
        service: NamedDependency[OrderService],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[OrderRead]:
        """Place an order for one or more books."""
        answer = await service.place_order(
            data=data, idempotency_key=idempotency_key, client=caller(request)
        )
        # The stored bytes are the encoded OrderRead: a replay sends them unchanged.
        return cast("Response[OrderRead]", answer_response(answer))

    @get(
        "",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=[
            ResponseHeader(
                name="X-Total-Count", description="Orders matching.", documentation_only=True
            ),
            ResponseHeader(
                name="Link",
                description="RFC 8288 first/prev/next/last page links.",
                documentation_only=True,
            ),
        ],
    )
    async def list_orders(
        self,
        request: Request,  # type: ignore[type-arg]
        reads: NamedDependency[OrderReads],
        limit: Annotated[
            int,
            QueryParameter(
                ge=1, description=f"Page size; values above {MAX_PAGE_SIZE} are capped."
            ),
        ] = DEFAULT_PAGE_SIZE,
        offset: Annotated[
            int, QueryParameter(ge=0, le=2**31 - 1, description="Items to skip.")
        ] = 0,
        status: Annotated[
            OrderStatus | None, QueryParameter(description="Only this status.")
        ] = None,
        customer_id: Annotated[
            int | None, QueryParameter(ge=1, le=MAX_ID, description="Only this customer's orders.")
        ] = None,
    ) -> Response[OrderPage]:
        """List orders, newest first."""
        limit = min(limit, MAX_PAGE_SIZE)
        orders, total = await reads.page(
            limit=limit, offset=offset, status=status, customer_id=customer_id
        )
        page = OrderPage(data=orders, total=total, limit=limit, offset=offset)
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/{order_id:str}",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
    )
    async def get_order(
        self, reads: NamedDependency[OrderReads], order_id: OrderIdPath
    ) -> OrderRead:
        """Fetch one order with its lines."""
        order = await reads.order(order_id=order_id)
        if order is None:
            raise OrderNotFound(order_id)
        return order

    @post(
        "/{order_id:str}/cancel",
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 422),
        response_description="The cancelled order.",
    )
    async def cancel_order(
        self, service: NamedDependency[OrderService], order_id: OrderIdPath
    ) -> OrderRead:
        """Cancel a pending or confirmed order; its reserved stock is given back.

        Rejected and already cancelled orders cannot be cancelled (409).
        """
        return await service.cancel_order(order_id=order_id)
