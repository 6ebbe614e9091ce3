"""Internal stock API for the workers: service key required, absent from the public docs."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from books.http import DocumentedRoute, problem_responses, require_json
from books.inventory.schemas import ReleaseRead, ReleaseRequest, ReservationRead, ReservationRequest
from books.inventory.service import InventoryServiceDep
from books.security import require_service_key

router = APIRouter(
    prefix="/internal/v1/stock",
    tags=["internal"],
    route_class=DocumentedRoute,
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
