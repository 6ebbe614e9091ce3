"""Errors of the internal stock API (rendered as problem+json like every other)."""

from __future__ import annotations

from books.errors import BookstoreError


class ServiceKeyRequired(BookstoreError):
    status, title, type = 401, "Unauthorized", "/problems/service-key-required"

    def __init__(self, detail: str) -> None:
        # RFC 9110 wants a challenge on every 401; FastAPI's API-key schemes use `APIKey`.
        super().__init__(detail, headers={"WWW-Authenticate": "APIKey"})


class InternalApiDisabled(BookstoreError):
    status, title, type = 503, "Internal API disabled", "/problems/internal-api-disabled"

    def __init__(self) -> None:
        super().__init__(
            "The internal API is off because no service key is configured; set SERVICE_KEY."
        )


class ReferenceReused(BookstoreError):
    status, title, type = 409, "Reference already used", "/problems/reference-reused"

    def __init__(self, reference: str) -> None:
        super().__init__(
            f"{reference} was already reserved with other lines; a repeat must send the same lines."
        )
