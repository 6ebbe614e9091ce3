"""Wire formats of the stock API: the internal reservations and the public ledger."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from books.catalog.schemas import (
    MAX_STOCK,
    TEXT_PATTERN,
    BookIdValue,
    Timestamp,
    drop_null,
    no_nul,
    whole_number,
)

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


class MovementKind(StrEnum):
    """Why a book's stock moved; the sign of the change follows from it."""

    OPENING = "opening"
    RESERVE = "reserve"
    RELEASE = "release"
    RESTOCK = "restock"
    REMOVAL = "removal"
    UNTRACKED = "untracked"


Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(no_nul),
    Field(
        description="Why the stock changed, for the ledger.",
        examples=["delivery 4711"],
        json_schema_extra={"pattern": TEXT_PATTERN},
    ),
]
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_STOCK), BeforeValidator(whole_number)]


def _adjustment_schema(schema: dict[str, Any]) -> None:
    """What `StockAdjustment._one_way` enforces, said in the document."""
    drop_null(schema)
    schema["oneOf"] = [{"required": ["change"]}, {"required": ["set", "expected"]}]
    schema["dependentRequired"] = {"set": ["expected"], "expected": ["set"]}
    schema["examples"] = [
        {"change": 12, "reason": "delivery 4711"},
        {"set": 40, "expected": 42, "reason": "stock count, aisle 3"},
    ]


class StockAdjustment(BaseModel):
    """Either a `change` (+n received, -n damaged or lost), which commutes with the
    reservations of orders made meanwhile, or a `set` to a counted number with the
    `expected` stock it replaces, refused with 409 if the stock moved since."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=lambda schema: _adjustment_schema(schema),
    )

    change: (
        Annotated[
            int,
            Field(
                strict=True, ge=-MAX_STOCK, le=MAX_STOCK, json_schema_extra={"not": {"const": 0}}
            ),
            BeforeValidator(whole_number),
        ]
        | None
    ) = Field(default=None, description="Copies to add (positive) or remove (negative); not 0.")
    set: Count | None = Field(default=None, description="The stock to set, as counted.")
    expected: Count | None = Field(
        default=None, description="With `set`: the stock you saw before counting; required."
    )
    reason: Reason

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if (self.change is None) == (self.set is None):
            raise ValueError("send either `change` or `set` (with `expected`), not both")
        if self.change == 0:
            raise ValueError("`change` must not be 0")
        if (self.set is None) != (self.expected is None):
            raise ValueError("`expected` goes with `set`, and `set` needs it")
        return self


class StockMovementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    book_id: int
    kind: MovementKind
    change: int = Field(
        validation_alias="delta", description="Signed: what the movement added to the stock."
    )
    reference: str | None = Field(description="The reservation, for `reserve` and `release`.")
    reason: str | None = Field(description="Why, for every other kind.")
    created_at: Timestamp


class StockAdjusted(BaseModel):
    stock: int = Field(description="The book's stock after the adjustment.")
    movement: StockMovementRead | None = Field(
        description="The ledger's new movement; null when a count found the stock expected."
    )


class StockMovementPage(BaseModel):
    data: list[StockMovementRead]
    total: int
    limit: int
    offset: int
