"""Pieces every controller uses: problem+json docs, the strict JSON body guard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, cast
from urllib.parse import parse_qsl

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import ValidationException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPI, Operation, Schema
from litestar.params import HeaderParameter
from litestar.types import Guard

from orders.errors import UnsupportedMediaType
from orders.idempotency import Answer
from orders.problems import Problem
from servicekit.pagination import link_header
from servicekit.problems import PROBLEM_JSON

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID is ideal). A retry with the same key and body "
        "returns the first answer instead of doing the work twice.",
    ),
]


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
    """OpenAPI entries for the given error statuses, all problem+json, plus those every
    public route may answer: 401/403 (every one needs an API key), 429 past the caller's
    rate limit, 500, and 503 while the database is unavailable."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=HTTPStatus(code).phrase,
            generate_examples=False,
        )
        for code in sorted({*statuses, 401, 403, 429, 500, 503})
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
            if _valid_with_whole_numbers(body, struct):
                return
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


def _valid_with_whole_numbers(body: bytes, struct: type[msgspec.Struct]) -> bool:
    """JSON has one kind of number: 180.0 is the integer 180, as JSON Schema's `integer`
    has it. Only a body the strict pass refused is looked at again this way, so the usual
    request pays nothing; `"180"` and `180.5` stay refused."""
    try:
        msgspec.convert(_whole_numbers(msgspec.json.decode(body)), type=struct, strict=True)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    return value


def answer_response(answer: Answer) -> Response[Any]:
    """The stored answer of an idempotent request, byte for byte; a replay says so."""
    headers = dict(answer.response.headers)
    media_type = headers.pop("content-type")
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        answer.response.body,
        status_code=answer.response.status,
        headers=headers,
        media_type=media_type,
    )


def paged(
    request: Request[Any, Any, Any], page: Any, *, total: int, limit: int, offset: int
) -> Response[Any]:
    """A page of a list with `X-Total-Count` and RFC 8288 `Link` headers."""
    links = link_header(
        request.url.path,
        # The raw query, not Litestar's parsed one: that one does not keep the order.
        parse_qsl(request.url.query, keep_blank_values=True),
        total=total,
        limit=limit,
        offset=offset,
    )
    return Response(page, headers={"X-Total-Count": str(total), "Link": links})


def document_structs(document: OpenAPI) -> None:
    """What msgspec enforces on our structs and Litestar leaves out of the document:
    `additionalProperties: false` for a struct that forbids unknown fields, and a lower
    bound of 0 (Litestar tests a bound for truth, so `ge=0` vanishes)."""
    schemas = document.components.schemas or {} if document.components else {}
    for struct in _subclasses(msgspec.Struct):
        component = schemas.get(struct.__name__)
        if component is None:
            continue
        if struct.__struct_config__.forbid_unknown_fields:
            component.additional_properties = False
        (reference,), definitions = msgspec.json.schema_components([struct])
        enforced = definitions[reference["$ref"].rpartition("/")[2]]["properties"]
        for name, documented in (component.properties or {}).items():
            if not isinstance(documented, Schema):
                continue
            bound = enforced.get(name, {}).get("minimum")
            if bound is not None and documented.minimum is None:
                documented.minimum = bound
            _document_union(documented, enforced.get(name, {}).get("anyOf", []))
            _document_items(documented, enforced.get(name, {}).get("items", {}))
            if enforced.get(name, {}).get("uniqueItems"):
                # Asked for by the field's `Meta(extra_json_schema=…)`: the service refuses
                # repeats, which Litestar leaves out of the document.
                documented.unique_items = True


# msgspec's JSON Schema keywords, and the Schema attributes Litestar names them by.
_CONSTRAINTS = {
    "pattern": "pattern",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minimum": "minimum",
    "maximum": "maximum",
}


def _document_items(documented: Schema, enforced: dict[str, Any]) -> None:
    """An array of bounded numbers (`list[PolicyDays]`): Litestar documents its items by
    their type alone; this adds the bounds msgspec enforces on each."""
    if not isinstance(documented.items, Schema):
        return
    for keyword, attribute in _CONSTRAINTS.items():
        if keyword in enforced and getattr(documented.items, attribute) is None:
            setattr(documented.items, attribute, enforced[keyword])


def _document_union(documented: Schema, enforced: list[dict[str, Any]]) -> None:
    """A field that may be null (`Code | None`): Litestar documents the non-null side by
    its type alone; this adds the pattern, lengths and bounds msgspec enforces on it."""
    for option in documented.one_of or ():
        if not isinstance(option, Schema):
            continue
        for rule in enforced:
            if rule.get("type") == getattr(option.type, "value", option.type):
                for keyword, attribute in _CONSTRAINTS.items():
                    if keyword in rule:
                        setattr(option, attribute, rule[keyword])


INT64_MAX = 2**63 - 1


def exact_integer_bounds(document: OpenAPI) -> None:
    """Litestar writes an integer parameter's bounds as floats: 2**63 - 1 becomes
    9.223372036854776e18, which is 2**63, so a client (or a fuzzer) reading the document
    may send an id above the real limit. Written back as the integers they are."""
    for path in (document.paths or {}).values():
        for operation in (
            getattr(path, method) for method in ("get", "post", "put", "patch", "delete")
        ):
            for parameter in (operation.parameters if operation else None) or ():
                schema = getattr(parameter, "schema", None)
                if not isinstance(schema, Schema):
                    continue
                for bound in ("minimum", "maximum"):
                    value = getattr(schema, bound)
                    if isinstance(value, float) and value.is_integer():
                        exact = INT64_MAX if value == float(INT64_MAX) else int(value)
                        setattr(schema, bound, exact)


def _subclasses(cls: type[msgspec.Struct]) -> Iterator[type[msgspec.Struct]]:
    subclass: type[msgspec.Struct]
    for subclass in cls.__subclasses__():
        if subclass.__module__.startswith("orders."):
            yield subclass
        yield from _subclasses(subclass)


async def refuse_unknown_query(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: a query parameter the operation does not take is a 422 naming it, as the
    document (each operation lists its parameters) and books say; Litestar ignores it.

    The operation's names are cached by the route handler of the scope: the one a guard
    receives is a fresh copy on every call (Litestar's `authorize_connection`), so a cache
    keyed by it never hit and kept one entry per request."""
    unknown = sorted(set(connection.query_params) - _query_names(connection.route_handler))
    if unknown:
        raise ValidationException(
            extra=[
                {"key": name, "source": "query", "message": "not a parameter of this operation"}
                for name in unknown
            ]
        )


@cache
def _query_names(route_handler: BaseRouteHandler) -> frozenset[str]:
    """The query parameters of an operation, its dependencies' included."""
    model = cast("HTTPRouteHandler", route_handler).create_kwargs_model(path_parameters={})
    return frozenset(parameter.field_alias for parameter in model.expected_query_params)
