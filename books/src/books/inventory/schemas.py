"""Wire formats of the internal stock API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from books.catalog.schemas import BookIdValue

MAX_LINES = 100
MAX_QUANTITY = 10_000

Reference = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z]+:[0-9A-Za-z_-]{1,64}$"),
    Field(description="What the stock is for, as `kind:id`.", examples=["order:123"]),
]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class ReservationStatus(StrEnum):
    RESERVED = "reserved"
    REJECTED = "rejected"
    RELEASED = "released"


class ReleaseStatus(StrEnum):
    RELEASED = "released"
    NOT_RESERVED = "not_reserved"


class ShortageReason(StrEnum):
    INSUFFICIENT_STOCK = "insufficient_stock"
    BOOK_NOT_FOUND = "book_not_found"
    BOOK_INACTIVE = "book_inactive"


class StockLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    book_id: BookIdValue
    quantity: Quantity


class Shortage(BaseModel):
    book_id: int
    requested: int
    available: int = Field(description="Copies in stock now; 0 for a missing or inactive book.")
    reason: ShortageReason


class ReservationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reference": "order:123", "lines": [{"book_id": 1, "quantity": 2}]}]
        },
    )

    reference: Reference
    lines: Annotated[list[StockLine], Field(min_length=1, max_length=MAX_LINES)]

    @model_validator(mode="after")
    def _one_line_per_book(self) -> Self:
        book_ids = [line.book_id for line in self.lines]
        if len(set(book_ids)) != len(book_ids):
            raise ValueError("each book_id may appear in only one line")
        return self


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: Reference


class ReservationRead(BaseModel):
    """The outcome stored for a reference: a repeated request gets it back unchanged."""

    model_config = ConfigDict(from_attributes=True)

    reference: str
    status: ReservationStatus
    lines: list[StockLine]
    shortages: list[Shortage]


class ReleaseRead(BaseModel):
    reference: str
    status: ReleaseStatus
    lines: list[StockLine] = Field(description="What the reference had reserved and gave back.")
