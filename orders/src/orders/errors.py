"""Errors every domain of orders may raise (its books lookups, its request bodies)."""

from __future__ import annotations

from servicekit.problems import ProblemError


class IllegalTransition(ProblemError):
    """An order, a borrow or a hold asked to move where its status machine does not go."""

    status, title, type = 409, "Illegal status transition", "/problems/illegal-transition"
    code = "ILLEGAL_TRANSITION"

    def __init__(self, what: str, *, current: str, target: str) -> None:
        super().__init__(f"{what} is {current}; it cannot become {target}.")


class IdempotencyKeyReused(ProblemError):
    status, title, type = 422, "Idempotency key reused", "/problems/idempotency-key-reused"
    code = "IDEMPOTENCY_CONFLICT"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was used with a different request body; use a new key."
        )


class IdempotencyKeyInFlight(ProblemError):
    status, title, type = 409, "Request in progress", "/problems/idempotency-key-in-flight"
    code = "IDEMPOTENCY_IN_PROGRESS"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )


class BooksUnavailable(ProblemError):
    status, title, type = 503, "Books service unavailable", "/problems/books-unavailable"
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(
            "The books service could not be reached, so nothing was recorded; retry later.",
            headers={"Retry-After": str(retry_after)},
        )


class BooksContractBroken(ProblemError):
    status, title, type = 502, "Bad answer from the books service", "/problems/books-bad-gateway"
    code = "BOOKS_BAD_GATEWAY"

    def __init__(self) -> None:
        super().__init__("The books service answered in an unexpected way; nothing was recorded.")


class UnsupportedMediaType(ProblemError):
    status, title, type = 415, "Unsupported Media Type", "/problems/unsupported-media-type"
    code = "UNSUPPORTED_MEDIA_TYPE"
