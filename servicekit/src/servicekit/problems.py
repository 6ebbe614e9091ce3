"""What the services' RFC 9457 problem details have in common: the media type, the shared
problem types and the wording of errors that are not their own (bad input, a framework's
404/405, the database down, a bug). Each service renders them with its own framework."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus

PROBLEM_JSON = "application/problem+json"
VALIDATION_ERROR = "/problems/validation-error"
DATABASE_UNAVAILABLE = "/problems/database-unavailable"
DATABASE_RETRY_AFTER_S = "5"
UNEXPECTED_ERROR_DETAIL = "The server failed to handle this request; it has been logged."


class ProblemError(Exception):
    """An error a service reports to its client as a problem; subclasses set the status,
    title and type, and each service's error handler renders it."""

    status: int = 500
    title: str = "Internal Server Error"
    type: str = "about:blank"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors


def validation_detail(errors: Sequence[Mapping[str, str]]) -> str:
    """The `detail` of a validation problem: how many fields are wrong, and which."""
    return f"{len(errors)} field(s) are invalid: " + ", ".join(e["field"] for e in errors)


def database_unavailable_detail(database: str) -> str:
    return f"The {database} database is unavailable; retry shortly."


def http_error_detail(status: HTTPStatus, detail: str, *, method: str, path: str) -> str:
    """The `detail` of an HTTP error the framework raised: its own text where it says more
    than the status phrase, else what went wrong with this request."""
    if status == HTTPStatus.METHOD_NOT_ALLOWED:
        return f"{method} is not allowed on {path}."
    if detail != status.phrase:
        return detail
    if status == HTTPStatus.NOT_FOUND:
        return f"There is nothing at {path}."
    return status.description
