"""Errors of the stock API (rendered as problem+json like every other)."""

from __future__ import annotations

from servicekit.problems import ProblemError


class ReferenceReused(ProblemError):
    status, title, type = 409, "Reference already used", "/problems/reference-reused"
    code = "REFERENCE_REUSED"

    def __init__(self, reference: str) -> None:
        super().__init__(
            f"{reference} was already reserved with other lines; a repeat must send the same lines."
        )


class StockNotTracked(ProblemError):
    status, title, type = 409, "Stock not tracked", "/problems/stock-not-tracked"
    code = "STOCK_NOT_TRACKED"

    def __init__(self, book_id: int) -> None:
        super().__init__(
            f"Book {book_id} does not track its stock: set `stock` on the book to start."
        )


class StockChanged(ProblemError):
    status, title, type = 409, "Stock changed", "/problems/stock-changed"
    code = "STOCK_CHANGED"

    def __init__(self, *, book_id: int, stock: int, expected: int) -> None:
        super().__init__(
            f"Book {book_id} has {stock} in stock, not the {expected} expected: it moved since"
            " it was read. Count again, or send the difference as a `change`."
        )


class StockWouldBeNegative(ProblemError):
    status, title, type = 409, "Not that much stock", "/problems/stock-would-be-negative"
    code = "STOCK_WOULD_BE_NEGATIVE"

    def __init__(self, *, book_id: int, stock: int, change: int) -> None:
        super().__init__(
            f"Book {book_id} has {stock} in stock: a change of {change} would leave less than none."
        )
