"""What can go wrong with an order, as problems (rendered by `orders.problems`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from servicekit.problems import VALIDATION_ERROR, ProblemError, validation_detail


class OrderNotFound(ProblemError):
    status, title, type = 404, "Order not found", "/problems/order-not-found"
    code = "ORDER_NOT_FOUND"

    def __init__(self, order_id: int) -> None:
        super().__init__(f"No order has id {order_id}.")


class UnknownBooks(ProblemError):
    status, title, type = 422, "Unknown books", "/problems/unknown-books"
    code = "BOOK_NOT_FOUND"

    def __init__(self, positions: dict[int, int]) -> None:
        ids = ", ".join(str(book_id) for book_id in positions)
        super().__init__(
            f"These books do not exist or are no longer sold: {ids}.",
            errors=[
                {
                    "field": f"items[{index}].book_id",
                    "in": "body",
                    "message": f"book {book_id} does not exist or is no longer sold",
                }
                for book_id, index in positions.items()
            ],
        )
        self.book_ids = list(positions)


class RepeatedBooks(ProblemError):
    status, title, type = 422, "Validation failed", VALIDATION_ERROR
    code = "VALIDATION_ERROR"

    def __init__(self, repeats: dict[int, tuple[int, int]]) -> None:
        """`repeats`: line index -> (book id, index of the line that has it first)."""
        errors = [
            {
                "field": f"items[{index}].book_id",
                "in": "body",
                "message": f"book {book_id} is already on line {first}; "
                "put its whole quantity on one line",
            }
            for index, (book_id, first) in repeats.items()
        ]
        super().__init__(validation_detail(errors), errors=errors)


class Shortage(NamedTuple):
    """An order line asking for more copies than books has."""

    line: int
    book_id: int
    requested: int
    available: int

    def __str__(self) -> str:
        return f"book {self.book_id}: requested {self.requested}, available {self.available}"


class InsufficientStock(ProblemError):
    status, title, type = 409, "Insufficient stock", "/problems/insufficient-stock"
    code = "INSUFFICIENT_STOCK"

    def __init__(self, shortages: Sequence[Shortage]) -> None:
        super().__init__(
            f"Not enough stock, so nothing was ordered: {'; '.join(map(str, shortages))}.",
            errors=[
                {"field": f"items[{s.line}].quantity", "in": "body", "message": str(s)}
                for s in shortages
            ],
        )
