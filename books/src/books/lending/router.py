"""Internal copies API for the workers: service key required, absent from the public docs."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from books.http import BooksRoute, problem_responses, require_json
from books.lending.schemas import (
    CheckinRead,
    CheckinRequest,
    CheckoutRead,
    CheckoutRequest,
    TransferRead,
    TransferRequest,
)
from books.lending.service import LendingServiceDep
from books.security import require_service_key

router = APIRouter(
    prefix="/internal/v1/copies",
    tags=["internal"],
    route_class=BooksRoute,
    # In this order: a caller without the key learns nothing about what the body should be.
    dependencies=[Depends(require_service_key), Depends(require_json)],
    responses=problem_responses(401, 415, 422, 503),
)


@router.post("/checkouts", response_model=CheckoutRead, responses=problem_responses(409))
async def check_out_copy(payload: CheckoutRequest, service: LendingServiceDep) -> CheckoutRead:
    """Take a copy of a book off the shelf for a reference, at most once per reference."""
    return await service.check_out(reference=payload.reference, book_id=payload.book_id)


@router.post("/checkins", response_model=CheckinRead)
async def check_in_copy(payload: CheckinRequest, service: LendingServiceDep) -> CheckinRead:
    """Put a reference's copy back on the shelf, once; repeats change nothing."""
    return await service.check_in(reference=payload.reference)


@router.post("/transfers", response_model=TransferRead, responses=problem_responses(409))
async def transfer_copy(payload: TransferRequest, service: LendingServiceDep) -> TransferRead:
    """Hand a reference's copy to another reference without putting it on the shelf."""
    return await service.transfer(
        from_reference=payload.from_reference, to_reference=payload.to_reference
    )
