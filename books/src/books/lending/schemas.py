"""Wire formats of the internal copies API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from books.catalog.schemas import BookIdValue

Reference = Annotated[
    str,
    StringConstraints(pattern=r"^(borrow|hold):[0-9]{1,19}$"),
    Field(description="Who holds the copy: a borrow or a hold of orders.", examples=["borrow:12"]),
]


class CheckoutStatus(StrEnum):
    CHECKED_OUT = "checked_out"
    CHECKED_IN = "checked_in"
    PASSED_ON = "passed_on"
    UNAVAILABLE = "unavailable"
    NOT_LENDABLE = "not_lendable"
    BOOK_NOT_FOUND = "book_not_found"
    BOOK_INACTIVE = "book_inactive"


class CheckinStatus(StrEnum):
    CHECKED_IN = "checked_in"
    PASSED_ON = "passed_on"
    NOT_CHECKED_OUT = "not_checked_out"


class TransferStatus(StrEnum):
    TRANSFERRED = "transferred"
    NOT_CHECKED_OUT = "not_checked_out"


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reference": "borrow:12", "book_id": 7}]}
    )

    reference: Reference
    book_id: BookIdValue


class CheckinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: Reference


class TransferRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"from_reference": "borrow:12", "to_reference": "hold:5"}]},
    )

    from_reference: Reference
    to_reference: Reference

    @model_validator(mode="after")
    def _two_references(self) -> Self:
        if self.from_reference == self.to_reference:
            raise ValueError("from_reference and to_reference must differ")
        return self


class CheckoutRead(BaseModel):
    reference: str
    book_id: int = Field(description="The book whose copy the reference holds or asked for.")
    status: CheckoutStatus


class CheckinRead(BaseModel):
    reference: str
    book_id: int | None = Field(description="Null when no copy was ever under the reference.")
    status: CheckinStatus


class TransferRead(BaseModel):
    from_reference: str
    to_reference: str
    book_id: int | None = Field(description="Null when from_reference never held a copy.")
    status: TransferStatus
