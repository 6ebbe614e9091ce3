"""Errors of the internal copies API (rendered as problem+json like every other)."""

from __future__ import annotations

from servicekit.problems import ProblemError


class ReferenceHoldsAnotherBook(ProblemError):
    status, title, type = 409, "Reference already used", "/problems/reference-reused"
    code = "REFERENCE_REUSED"

    def __init__(self, *, reference: str, book_id: int, held_book_id: int) -> None:
        super().__init__(
            f"{reference} already took a copy of book {held_book_id}; "
            f"it cannot take one of book {book_id}."
        )


class TransferTargetTaken(ProblemError):
    status, title, type = 409, "Reference already used", "/problems/reference-reused"
    code = "REFERENCE_REUSED"

    def __init__(self, *, from_reference: str, to_reference: str) -> None:
        super().__init__(
            f"{to_reference} already had a copy that did not come from {from_reference}; "
            "a copy can only be handed to a reference that never held one. Nothing moved."
        )
