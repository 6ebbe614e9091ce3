"""Domain errors and their RFC 9457 problem+json rendering."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicekit.logs import REQUEST_ID_HEADER, current_request_id
from servicekit.problems import (
    DATABASE_RETRY_AFTER_S,
    DATABASE_UNAVAILABLE,
    INTERNAL_ERROR_CODE,
    PROBLEM_JSON,
    SERVICE_UNAVAILABLE_CODE,
    UNEXPECTED_ERROR_DETAIL,
    VALIDATION_ERROR,
    VALIDATION_ERROR_CODE,
    ProblemError,
    database_unavailable_detail,
    http_error_code,
    http_error_detail,
    validation_detail,
)

logger = logging.getLogger(__name__)


class BookNotFound(ProblemError):
    status, title, type = 404, "Book not found", "/problems/book-not-found"
    code = "BOOK_NOT_FOUND"

    def __init__(self, book_id: int) -> None:
        super().__init__(f"No active book has id {book_id}.")


class CopiesOnLoan(ProblemError):
    status, title, type = 409, "Copies on loan", "/problems/copies-on-loan"
    code = "COPIES_ON_LOAN"

    def __init__(self, *, book_id: int, out: int, wanted: int | None) -> None:
        copies = "1 copy" if out == 1 else f"{out} copies"
        change = (
            "it cannot stop being lendable"
            if wanted is None
            else f"copies_total cannot go down to {wanted}"
        )
        super().__init__(
            f"Book {book_id} has {copies} out on loan, so {change}: the smallest "
            f"copies_total allowed is {out}. Nothing was changed."
        )


class UnknownItemType(ProblemError):
    status, title, type = 422, "Unknown item type", "/problems/unknown-item-type"
    code = "UNKNOWN_ITEM_TYPE"

    def __init__(self, code: str) -> None:
        super().__init__(
            f"There is no item type {code!r}; GET /v1/item-types lists them.",
            errors=[{"field": "format", "in": "body", "message": "no such item type"}],
        )


class ItemTypeNotFound(ProblemError):
    status, title, type = 404, "Item type not found", "/problems/item-type-not-found"
    code = "ITEM_TYPE_NOT_FOUND"

    def __init__(self, code: str) -> None:
        super().__init__(f"There is no item type {code!r}.")


class ItemTypeExists(ProblemError):
    status, title, type = 409, "Item type exists", "/problems/item-type-exists"
    code = "ITEM_TYPE_EXISTS"

    def __init__(self, code: str) -> None:
        super().__init__(f"An item type {code!r} exists already.")


class ItemTypeInUse(ProblemError):
    status, title, type = 409, "Item type in use", "/problems/item-type-in-use"
    code = "ITEM_TYPE_IN_USE"

    def __init__(self, code: str) -> None:
        super().__init__(
            f"Books still have item type {code!r}; change their format before deleting it."
        )


class DefaultItemType(ProblemError):
    status, title, type = 409, "Default item type", "/problems/default-item-type"
    code = "DEFAULT_ITEM_TYPE"

    def __init__(self, code: str) -> None:
        super().__init__(f"Item type {code!r} is what a book is by default; it cannot be deleted.")


class InvalidFilter(ProblemError):
    status, title, type = 422, "Invalid query", VALIDATION_ERROR
    code = "VALIDATION_ERROR"


class UnsupportedMediaType(ProblemError):
    status, title, type = 415, "Unsupported Media Type", "/problems/unsupported-media-type"
    code = "UNSUPPORTED_MEDIA_TYPE"


class BodyTooLarge(ProblemError):
    status, title, type = 413, "Request body too large", "/problems/body-too-large"
    code = "BODY_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"A request body is at most {limit:,} bytes (a cover upload included).")


class CoverTooLarge(ProblemError):
    status, title, type = 413, "Cover too large", "/problems/cover-too-large"
    code = "COVER_TOO_LARGE"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"Cover images may be at most {max_bytes} bytes.")


class CoverStorageNotConfigured(ProblemError):
    status, title, type = 501, "Cover storage not configured", "/problems/covers-disabled"
    code = "COVERS_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__(
            "Set CLOUDINARY_URL (or CLOUDINARY_CLOUD_NAME, CLOUDINARY_API_KEY and "
            "CLOUDINARY_API_SECRET) to enable cover uploads."
        )


class CoverStorageFailed(ProblemError):
    status, title, type = 502, "Cover storage failed", "/problems/cover-storage-failed"
    code = "COVER_STORAGE_FAILED"

    def __init__(self) -> None:
        super().__init__("The image service did not accept the cover; nothing was changed.")


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as `{"field", "in", "message"}` items."""
    items = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        where = loc[0] if loc and loc[0] in ("body", "query", "path", "header") else "body"
        path = loc[1:] if loc and loc[0] == where else loc
        field = ".".join(p if not p.isdigit() else f"[{p}]" for p in path).replace(".[", "[")
        items.append({"field": field or where, "in": where, "message": error.get("msg", "")})
    return items


def problem_response(
    request: Request,
    *,
    status: int,
    title: str,
    detail: str,
    code: str,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": current_request_id(),
        "error": code,
        "message": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def render_problem(request: Request, problem: ProblemError) -> JSONResponse:
    """One of our problems as the response it is (also for middleware, which runs outside
    the exception handlers)."""
    return problem_response(
        request,
        status=problem.status,
        title=problem.title,
        detail=problem.detail,
        code=problem.code,
        type_=problem.type,
        headers=problem.headers,
        errors=problem.errors,
    )


async def _problem_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return render_problem(request, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    return problem_response(
        request,
        status=422,
        title="Validation failed",
        detail=validation_detail(errors),
        code=VALIDATION_ERROR_CODE,
        type_=VALIDATION_ERROR,
        errors=errors,
    )


def allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document gives this path (and HEAD with GET, which
    Starlette serves). Starlette's own 405 names only the methods of the first route whose
    path matched: `GET` for /v1/books/7, not PUT, PATCH and DELETE."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = HTTPStatus(exc.status_code)
    headers = dict(exc.headers or {})
    if status is HTTPStatus.METHOD_NOT_ALLOWED:
        headers["Allow"] = allowed_methods(request)
    return problem_response(
        request,
        status=status.value,
        title=status.phrase,
        detail=http_error_detail(
            status, str(exc.detail), method=request.method, path=request.url.path
        ),
        code=http_error_code(status),
        headers=headers,
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        request,
        status=503,
        title="Service Unavailable",
        detail=database_unavailable_detail("catalog"),
        code=SERVICE_UNAVAILABLE_CODE,
        type_=DATABASE_UNAVAILABLE,
        headers={"Retry-After": DATABASE_RETRY_AFTER_S},
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    # Starlette answers unhandled errors outside the request-id middleware, so the
    # header that middleware would add is set here.
    request_id = current_request_id()
    return problem_response(
        request,
        status=500,
        title="Internal Server Error",
        detail=UNEXPECTED_ERROR_DETAIL,
        code=INTERNAL_ERROR_CODE,
        headers={REQUEST_ID_HEADER: request_id} if request_id else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # SQLAlchemy's for the sessions, psycopg's (a pool timeout included) for the read pool.
    for database_error in (
        OperationalError,
        InterfaceError,
        PoolTimeoutError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
    ):
        app.add_exception_handler(database_error, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
