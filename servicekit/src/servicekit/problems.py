"""What the services' RFC 9457 problem details have in common: the media type, the shared
problem types, the machine codes and the wording of errors that are not their own (bad
input, a framework's 404/405, the database down, a bug). Each service renders them with
its own framework.

Every problem carries two extension members beside RFC 9457's: `error`, a stable
UPPER_SNAKE code (the predecessor system's codes where its case exists), and `message`,
the same sentence as `detail`, so clients written for the predecessor keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import ClassVar, NamedTuple

PROBLEM_JSON = "application/problem+json"
VALIDATION_ERROR = "/problems/validation-error"
DATABASE_UNAVAILABLE = "/problems/database-unavailable"
DATABASE_RETRY_AFTER_S = "5"
UNEXPECTED_ERROR_DETAIL = "The server failed to handle this request; it has been logged."


# The codes of the problems no `ProblemError` stands for.
VALIDATION_ERROR_CODE = "VALIDATION_ERROR"
SERVICE_UNAVAILABLE_CODE = "SERVICE_UNAVAILABLE"
INTERNAL_ERROR_CODE = "INTERNAL_ERROR"


class ProblemError(Exception):
    """An error a service reports to its client as a problem; subclasses set the status,
    title, type and `code` (the `error` member), and each service's error handler renders it."""

    code: ClassVar[str]
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


def http_error_code(status: HTTPStatus) -> str:
    """The `error` of an HTTP error the framework raised: the status's name (NOT_FOUND,
    METHOD_NOT_ALLOWED, REQUEST_ENTITY_TOO_LARGE, ...)."""
    return status.name


class ProblemCode(NamedTuple):
    """A row of the table of codes."""

    code: str
    status: int
    meaning: str


# The problems every service answers that its framework or renderer raises, not our code.
FRAMEWORK_CODES = (
    ProblemCode(VALIDATION_ERROR_CODE, 422, "Bad input; `errors` names each field at fault"),
    ProblemCode("NOT_FOUND", 404, "No route at this path"),
    ProblemCode("METHOD_NOT_ALLOWED", 405, "The path does not take this method"),
    ProblemCode(
        SERVICE_UNAVAILABLE_CODE,
        503,
        "The database (or, for orders, books) is unavailable; retry after `Retry-After`",
    ),
    ProblemCode(INTERNAL_ERROR_CODE, 500, "A bug; logged under the request id"),
)


def problem_errors(*packages: str) -> list[type[ProblemError]]:
    """Every `ProblemError` subclass defined in `packages` (imported ones only)."""
    found: list[type[ProblemError]] = []
    pending = list(ProblemError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in packages:
            found.append(cls)
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


def problem_codes(errors: Iterable[type[ProblemError]]) -> list[ProblemCode]:
    """One row per code, the framework's first, then by status; classes sharing a code
    share its row."""
    rows = {row.code: row for row in FRAMEWORK_CODES}
    ours: dict[str, ProblemCode] = {}
    for cls in errors:
        if cls.code not in rows:
            ours.setdefault(cls.code, ProblemCode(cls.code, cls.status, cls.title))
    return [*rows.values(), *sorted(ours.values(), key=lambda row: (row.status, row.code))]


def codes_table(rows: Iterable[ProblemCode]) -> str:
    """The table of codes as Markdown, for an OpenAPI description."""
    lines = ["| `error` | status | meaning |", "|---|---|---|"]
    lines += [f"| `{row.code}` | {row.status} | {row.meaning} |" for row in rows]
    return "\n".join(lines)


def errors_description(*packages: str) -> str:
    """The paragraph on errors of a service's OpenAPI description, with its table of codes."""
    return (
        "Errors are RFC 9457 problem+json with two more members: `error`, a stable machine "
        "code, and `message`, the same sentence as `detail`. The codes:\n\n"
        + codes_table(problem_codes(problem_errors(*packages)))
    )
