"""Pieces every router uses: the problem+json schema for docs, content-type checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from fastapi import Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from books.errors import BodyTooLarge, UnsupportedMediaType, render_problem
from books.security import admit
from servicekit.problems import PROBLEM_JSON

M = TypeVar("M", bound=BaseModel)

BookId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Book id.")]


class BodyLimit:
    """A body larger than `max_bytes` is a 413 problem, before it is read when its length
    is declared, as soon as it passes the limit otherwise. Written here because
    Starlette's limiter (FastAPI's `max_body_size`) answers a declared-too-long body with
    text/plain, replacing our problem+json."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = render_problem(Request(scope), BodyTooLarge(self.max_bytes))
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def query_model(model: type[M]) -> Callable[[Request], Coroutine[Any, Any, M]]:
    """Dependency: the query string validated into `model`, a 422 naming each bad parameter.

    Instead of FastAPI's `Annotated[model, Query()]`, which takes each field's annotation
    apart again on every request: a fifth of the instructions of a batch lookup by ids
    (`GET /v1/books?ids=…`, which orders sends for every order). The operation declares the
    parameters with `query_parameters(model)`, as FastAPI would have."""

    async def parse(request: Request) -> M:
        try:
            return model.model_validate(dict(request.query_params))
        except ValidationError as error:
            errors = [{**e, "loc": ("query", *e["loc"])} for e in error.errors()]
            raise RequestValidationError(errors) from None

    return parse


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring `model`'s fields as the operation's query parameters."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field,
            **({"description": field["description"]} if "description" in field else {}),
        }
        for name, field in schema["properties"].items()
    ]
    return {"parameters": parameters}


def json_response(body: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """`body` serialized once, by pydantic-core. A route that returns its model instead has
    FastAPI validate it against the response model again, then encode it."""
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


class BooksRoute(APIRoute):
    """The class of every route of the API. A request to it is admitted first (its key
    found, its rate limit counted: `admit`), before its body is read or its dependencies
    run; an app-wide dependency did the same at the cost of a dependency level on every
    request (5% of a GET by id's instructions). The endpoint's one-line docstring is its
    OpenAPI summary (FastAPI uses its name)."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        if kwargs.get("summary") is None and endpoint.__doc__:
            kwargs["summary"] = endpoint.__doc__.strip().splitlines()[0].rstrip(".")
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def admitted(request: Request) -> Response:
            await admit(request)
            return await handler(request)

        return admitted


class FieldError(BaseModel):
    field: str = Field(examples=["price"])
    in_: str = Field(alias="in", examples=["body"])
    message: str = Field(examples=["Decimal input should have no more than 2 decimal places"])


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str = Field(examples=["/problems/validation-error"])
    title: str
    status: int
    detail: str
    instance: str = Field(examples=["/v1/books"])
    request_id: str | None = None
    error: str = Field(
        description="Stable machine code (UPPER_SNAKE); the table of codes is in this "
        "document's description.",
        examples=["BOOK_NOT_FOUND"],
    )
    message: str = Field(description="The same sentence as `detail`.")
    errors: list[FieldError] | None = Field(
        default=None, description="Present on validation errors: one item per bad field."
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses, plus the two every
    public route may answer: 429 past the caller's rate limit, and 500."""
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "model": Problem,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in sorted({*statuses, 429, 500})
    }


async def require_json(request: Request) -> None:
    """Bodies must be JSON; anything else is a 415 rather than a confusing 422."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"Send the body as application/json (got {content_type or 'no Content-Type'})."
        )
