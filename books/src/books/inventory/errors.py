"""Errors of the internal stock API (rendered as problem+json like every other)."""

from __future__ import annotations

from servicekit.problems import ProblemError


class ReferenceReused(ProblemError):
    status, title, type = 409, "Reference already used", "/problems/reference-reused"
    code = "REFERENCE_REUSED"

    def __init__(self, reference: str) -> None:
        super().__init__(
            f"{reference} was already reserved with other lines; a repeat must send the same lines."
        )
