"""Request bodies of the endpoints that take a cover file: bounded multipart reading and
validation errors in the same shape FastAPI gives JSON bodies."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.types import Message

from books.catalog.schemas import (
    Author,
    BookCreate,
    CopiesTotal,
    Description,
    ItemTypeCode,
    Money,
    Stock,
    Title,
)
from books.covers.service import ACCEPTED_FORMATS, CoverUploadOutcome, count_upload
from books.errors import CoverTooLarge, UnsupportedMediaType

Model = TypeVar("Model", bound=BaseModel)

# Room for the text fields and multipart framing beside the file (a description may be
# 20,000 characters, up to 80 kB in UTF-8).
FORM_OVERHEAD_BYTES = 128 * 1024

JSON = "application/json"
MULTIPART = "multipart/form-data"

_FILE_DESCRIPTION = f"{', '.join(ACCEPTED_FORMATS)} image, checked from its bytes."


class CoverForm(BaseModel):
    """Body of `PUT /v1/books/{id}/cover`."""

    model_config = ConfigDict(extra="forbid")

    file: Annotated[UploadFile, Field(description=_FILE_DESCRIPTION)]


def _blank_is_none(value: Any) -> Any:
    """A file input left blank arrives as an empty, unnamed part (browsers) or as "". A form
    cannot hold JSON's null, so the text `null` (what generated clients send for it, the
    OpenAPI document allowing null) means the same."""
    blank_file = isinstance(value, StarletteUploadFile) and not value.filename and not value.size
    return None if value in ("", "null") or blank_file else value


FormStock = Annotated[Stock, Field(strict=False)]
FormCopiesTotal = Annotated[CopiesTotal, Field(strict=False)]


class BookCreateForm(BaseModel):
    """Body of `POST /v1/books` sent as a form, with an optional cover file."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    author: Author
    description: Description
    price: Money
    # Form fields are text: "5" is a stock level here; blank means not tracked.
    stock: Annotated[FormStock | None, BeforeValidator(_blank_is_none)] = None
    copies_total: Annotated[FormCopiesTotal | None, BeforeValidator(_blank_is_none)] = None
    format: ItemTypeCode = "book"
    cover: Annotated[
        UploadFile | None, BeforeValidator(_blank_is_none), Field(description=_FILE_DESCRIPTION)
    ] = None

    def book(self) -> BookCreate:
        return BookCreate(
            title=self.title,
            author=self.author,
            description=self.description,
            price=self.price,
            stock=self.stock,
            copies_total=self.copies_total,
            format=self.format,
        )


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def unsupported_body(request: Request, *accepted: str) -> UnsupportedMediaType:
    sent = request.headers.get("content-type") or "no Content-Type"
    return UnsupportedMediaType(f"Send the body as {' or '.join(accepted)} (got {sent}).")


def validate_body(model: type[Model], data: Any) -> Model:
    """Validate like FastAPI does a body parameter, so errors keep the same shape."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from exc


async def read_json(request: Request) -> Any:
    """The JSON body, with FastAPI's errors for an empty or malformed one."""
    if not await request.body():
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return await request.json()
    except (UnicodeDecodeError, RecursionError) as exc:
        message = (
            "the body is not UTF-8"
            if isinstance(exc, UnicodeDecodeError)
            else "the JSON is nested too deeply"
        )
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": message, "input": {}}]
        ) from exc
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from exc


async def read_multipart(request: Request, *, max_file_bytes: int) -> FormData:
    """Parse a multipart body, refusing it as soon as it outgrows the cover size limit.

    Starlette spools files to disk past 1 MB; the byte count on the incoming stream keeps
    that bounded too. The caller closes the returned form.
    """
    if media_type(request) != MULTIPART:
        raise unsupported_body(request, MULTIPART)
    limit = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(max_file_bytes)
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise _too_large(max_file_bytes)
        return message

    bounded = Request(request.scope, receive_within_limit)
    form = await bounded.form(max_files=1, max_fields=20)
    for _, value in form.multi_items():
        if isinstance(value, StarletteUploadFile) and (value.size or 0) > max_file_bytes:
            await form.close()
            raise _too_large(max_file_bytes)
    return form


async def read_cover_form(request: Request, *, max_file_bytes: int) -> bytes:
    """The image of a `CoverForm` body."""
    form = await read_multipart(request, max_file_bytes=max_file_bytes)
    try:
        return await validate_body(CoverForm, dict(form.multi_items())).file.read()
    finally:
        await form.close()


async def read_book_form(
    request: Request, *, max_file_bytes: int
) -> tuple[BookCreate, bytes | None]:
    """The book and optional cover image of a `BookCreateForm` body."""
    form = await read_multipart(request, max_file_bytes=max_file_bytes)
    try:
        fields = validate_body(BookCreateForm, dict(form.multi_items()))
        cover = await fields.cover.read() if fields.cover is not None else None
    finally:
        await form.close()
    return fields.book(), cover


def _too_large(max_file_bytes: int) -> CoverTooLarge:
    count_upload(CoverUploadOutcome.REJECTED)
    return CoverTooLarge(max_file_bytes)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined, for `openapi_extra`."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def multipart_request_body(
    model: type[BaseModel], *, json_model: type[BaseModel] | None = None
) -> dict[str, Any]:
    """OpenAPI `requestBody` for a multipart body (and a JSON alternative)."""
    content: dict[str, Any] = {MULTIPART: {"schema": inline_schema(model)}}
    if json_model is not None:
        content = {JSON: {"schema": inline_schema(json_model)}, **content}
    return {"requestBody": {"required": True, "content": content}}
