"""The stock API: reservations for the workers (internal: service key required, absent
from the public docs), and each book's stock ledger with its adjustments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from books.http import BookId, BooksRoute, problem_responses, require_json
from books.inventory.schemas import (
    ReleaseRead,
    ReleaseRequest,
    ReservationRead,
    ReservationRequest,
    StockAdjusted,
    StockAdjustment,
    StockMovementPage,
)
from books.inventory.service import InventoryServiceDep
from books.security import require_service_key, requires
from servicekit.api_keys import CATALOG_WRITE
from servicekit.pagination import link_header

MAX_OFFSET = 2**31 - 1

router = APIRouter(
    prefix="/internal/v1/stock",
    tags=["internal"],
    route_class=BooksRoute,
    # In this order: a caller without the key learns nothing about what the body should be.
    dependencies=[Depends(require_service_key), Depends(require_json)],
    responses=problem_responses(401, 415, 422, 503),
)


@router.post("/reservations", response_model=ReservationRead, responses=problem_responses(409))
async def reserve_stock(
    payload: ReservationRequest, service: InventoryServiceDep
) -> ReservationRead:
    """Reserve stock for every line of a reference, or for none; repeats replay the outcome."""
    return await service.reserve_stock(reference=payload.reference, lines=payload.lines)


@router.post("/releases", response_model=ReleaseRead)
async def release_stock(payload: ReleaseRequest, service: InventoryServiceDep) -> ReleaseRead:
    """Give back what a reference reserved, once; repeats change nothing."""
    return await service.release_stock(reference=payload.reference)


ledger_router = APIRouter(prefix="/v1/books/{book_id}", tags=["stock"], route_class=BooksRoute)


@ledger_router.post(
    "/stock-adjustments",
    response_model=StockAdjusted,
    responses=problem_responses(400, 401, 403, 404, 409, 415, 422),
    # A change of stock is a catalog write: the admin's.
    dependencies=[requires(CATALOG_WRITE), Depends(require_json)],
)
async def adjust_stock(
    book_id: BookId, adjustment: StockAdjustment, service: InventoryServiceDep
) -> StockAdjusted:
    """Add or remove stock (`change`), or set it to a count (`set`, with the stock
    `expected` before counting: 409 if it moved since); the ledger records why."""
    return await service.adjust_stock(book_id=book_id, adjustment=adjustment)


@ledger_router.get(
    "/stock-movements", response_model=StockMovementPage, responses=problem_responses(404, 422)
)
async def list_stock_movements(
    book_id: BookId,
    service: InventoryServiceDep,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> StockMovementPage:
    """The book's stock ledger, newest first: every change of its stock, and why. The
    sum of every `change` is the book's stock."""
    page = await service.ledger(book_id=book_id, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(page.total)
    response.headers["Link"] = link_header(
        request.url.path,
        request.query_params.multi_items(),
        total=page.total,
        limit=limit,
        offset=offset,
    )
    return page
