"""Wire formats of orders: money as 2-decimal strings, timestamps in UTC with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from orders.ordering.models import OrderStatus

MAX_ITEMS = 100
MAX_QUANTITY = 10_000
MAX_UNIT_PRICE = Decimal("99999999.99")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_ID = 2**63 - 1
# Room for a shortage per line of the largest order.
MAX_REASON_LENGTH = 10_000
CENT = Decimal("0.01")

Id = Annotated[int, Meta(ge=1, le=MAX_ID)]
Money = Annotated[str, Meta(pattern=r"^\d+\.\d{2}$", examples=["19.99"])]


def money(value: Decimal) -> str:
    return f"{value.quantize(CENT):f}"


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class OrderItemCreate(msgspec.Struct, forbid_unknown_fields=True):
    book_id: Id
    quantity: Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]


class OrderCreate(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[OrderItemCreate], Meta(min_length=1, max_length=MAX_ITEMS)]
    customer_id: Id | None = None

    def repeated_lines(self) -> dict[int, int]:
        """Each line naming a book an earlier line already has, mapped to that first line."""
        first_line: dict[int, int] = {}
        repeats = {}
        for index, item in enumerate(self.items):
            if (first := first_line.setdefault(item.book_id, index)) != index:
                repeats[index] = first
        return repeats

    @property
    def book_ids(self) -> list[int]:
        return [item.book_id for item in self.items]


class RejectionCause(StrEnum):
    """What stopped an order: a bounded label for the metrics."""

    INSUFFICIENT_STOCK = "insufficient_stock"
    BOOK_NOT_FOUND = "book_not_found"
    BOOK_INACTIVE = "book_inactive"
    # Not a shortage: the reservation never completed and the reconciler gave up.
    UNSETTLED = "unsettled"


class OrderReject(msgspec.Struct, forbid_unknown_fields=True):
    cause: Annotated[
        RejectionCause,
        Meta(description="The kind of shortage (of the first short line), counted by cause."),
    ]
    reason: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_REASON_LENGTH,
            pattern=r"\S",
            description="Why the order cannot be fulfilled, for the customer and operators.",
            examples=["insufficient stock for book 7: requested 3, available 1"],
        ),
    ]

    def __post_init__(self) -> None:
        self.reason = self.reason.strip()


class OrderItemRead(msgspec.Struct, kw_only=True):
    id: int
    order_id: int
    book_id: int
    book_title: str
    book_author: str
    quantity: int
    unit_price: Money
    total_price: Money
    created_at: datetime


class OrderRead(msgspec.Struct, kw_only=True):
    id: int
    status: OrderStatus
    rejection_reason: Annotated[
        str | None, Meta(description="Why the order was rejected; null unless rejected.")
    ]
    customer_id: int | None
    total_price: Money
    items: list[OrderItemRead]
    created_at: datetime
    updated_at: datetime


class OrderPage(msgspec.Struct, kw_only=True):
    data: list[OrderRead]
    total: Annotated[int, Meta(description="Orders matching the filters (not just this page).")]
    limit: int
    offset: int


class BuyOrder(msgspec.Struct, kw_only=True):
    items: Annotated[list[OrderItemCreate], Meta(description="One copy of the book.")]


class BuyInstead(msgspec.Struct, kw_only=True):
    """The shop sells this book and has it now: what a member who would rather not wait
    (or cannot borrow it) can order."""

    price: Annotated[Money, Meta(description="The book's price.")]
    in_stock: Annotated[int, Meta(description="Copies the shop has for sale now.")]
    order: Annotated[
        BuyOrder,
        Meta(description="The request that orders one copy: `POST /v1/orders` with this body."),
    ]

    @classmethod
    def offer(cls, *, book_id: int, price: Decimal, stock: int | None) -> BuyInstead | None:
        """The shop's offer of a book, if it has it in stock."""
        if not stock:
            return None
        return cls(
            price=money(price),
            in_stock=stock,
            order=BuyOrder(items=[OrderItemCreate(book_id=book_id, quantity=1)]),
        )
