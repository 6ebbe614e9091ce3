"""Pieces every controller uses: problem+json docs, the strict JSON body guard."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.types import Guard

from orders.errors import UnsupportedMediaType
from orders.problems import Problem
from servicekit.problems import PROBLEM_JSON


@dataclass
class DocumentedOperation(Operation):
    """An operation as our clients see it.

    Its summary is the handler docstring's first line, and Litestar's generic 400 entry
    is dropped: bad input is answered with 422 problem+json, documented per handler.
    """

    def __post_init__(self) -> None:
        if self.description:
            first, *rest = self.description.strip().splitlines()
            self.summary = first
            self.description = "\n".join(rest).strip() or None
        if self.responses:
            self.responses.pop("400", None)


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the given error statuses, all problem+json, plus the two every
    route may answer: 500, and 503 while the database is unavailable."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(code).phrase,
            generate_examples=False,
        )
        for code in sorted({*statuses, 500, 503})
    }


def json_body(struct: type[msgspec.Struct]) -> Guard:
    """Guard: the body must be JSON of exactly `struct`'s types.

    Litestar decodes bodies leniently (`"1"` becomes `1`); this strict pass first makes
    wrong types a 422, as the API promises, with the same field errors.
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], __: BaseRouteHandler) -> None:
        content_type = connection.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType(
                f"Send the body as application/json (got {content_type or 'no Content-Type'})."
            )
        body = await cast("Request[Any, Any, Any]", connection).body()
        if not body:
            return  # Litestar reports the missing body itself.
        try:
            msgspec.json.decode(body, type=struct, strict=True)
        except msgspec.ValidationError as exc:
            message, _at, path = str(exc).rpartition(" - at `$")
            if not message:
                message, path = str(exc), ""
            key = path.rstrip("`").lstrip(".") or "data"
            raise ValidationException(
                extra=[{"key": key, "source": "body", "message": message}]
            ) from exc
        except msgspec.DecodeError:
            return  # Litestar reports malformed JSON itself.

    return guard
