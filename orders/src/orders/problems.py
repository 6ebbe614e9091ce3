"""RFC 9457 problem+json rendering of every error: ours (`ProblemError`) and Litestar's."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Self

import msgspec
import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from msgspec import Meta
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from orders.ordering.schemas import BuyInstead
from servicekit.logs import current_request_id
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


class FieldError(msgspec.Struct):
    field: Annotated[str, Meta(description="The input at fault: `items[0].quantity`, `limit`.")]
    in_: Annotated[str, Meta(description="Where it was: body, query, path or header.")] = (
        msgspec.field(name="in")
    )
    message: Annotated[str, Meta(description="What is wrong with it.")]


class Rule(msgspec.Struct, kw_only=True):
    """The circulation rule a refusal applied."""

    name: Annotated[
        str,
        Meta(
            description="Which rule: `max_loans` (the member's total), `max_loans_of_kind` "
            "(the policy's limit for this item type), `max_overdue_loans`, `max_balance` "
            "(fines owed; money as a string), `block_after_final_notice` (loans out after "
            "their final overdue notice), `not_lendable`, "
            "`holds_not_allowed`, `max_holds` (the policy's cap on open holds of this item "
            "type), `max_renewals`, `renew_grace`.",
            examples=["max_loans_of_kind"],
        ),
    ]
    policy_id: Annotated[
        int | None,
        Meta(description="The lending policy that set the limit; null for a member's own."),
    ] = None
    limit: Annotated[
        int | str | None,
        Meta(description="The limit in force (an amount of money as a 2-decimal string)."),
    ] = None
    current: Annotated[
        int | str | None,
        Meta(description="Where the member or loan stands now (money as a string)."),
    ] = None


class RuleRefusal:
    """Mixed into a problem that a circulation rule raises: the problem carries `rule`."""

    rule: Rule | None = None

    def __init__(self, detail: str, *, rule: Rule) -> None:
        super().__init__(detail)  # type: ignore[call-arg]  # the ProblemError it is mixed into
        self.rule = rule


class ShopOffer:
    """Mixed into a refusal of a book the member cannot borrow or hold: the problem
    carries the shop's offer of it (`buy_instead`), when the shop has it in stock."""

    buy_instead: BuyInstead | None = None

    def offering(self, offer: BuyInstead | None) -> Self:
        self.buy_instead = offer
        return self


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details, as every error response carries them."""

    type: Annotated[
        str, Meta(description="The kind of problem, e.g. /problems/loan-limit-reached.")
    ]
    title: Annotated[str, Meta(description="Short summary of the kind of problem.")]
    status: Annotated[int, Meta(description="The HTTP status code.")]
    detail: Annotated[str, Meta(description="What went wrong this time, and what to do about it.")]
    instance: Annotated[str, Meta(description="The path of the request.")]
    request_id: Annotated[
        str | None, Meta(description="The X-Request-ID of the request, to find it in the logs.")
    ]
    error: Annotated[
        str,
        Meta(
            description="Stable machine code (UPPER_SNAKE), e.g. LOAN_LIMIT_REACHED; "
            "the table of codes is in this document's description.",
            examples=["VALIDATION_ERROR"],
        ),
    ]
    message: Annotated[str, Meta(description="The same sentence as `detail`.")]
    errors: (
        Annotated[list[FieldError], Meta(description="One entry per invalid input.")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    rule: (
        Annotated[Rule, Meta(description="On a refusal by a circulation rule: which one.")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    buy_instead: (
        Annotated[
            BuyInstead,
            Meta(
                description="On a refusal of a book that cannot be lent or held: the shop's "
                "offer of it, when it has it in stock."
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    title: str,
    detail: str,
    code: str,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    errors: Iterable[dict[str, str]] | None = None,
    rule: Rule | None = None,
    buy_instead: BuyInstead | None = None,
) -> Response[Problem]:
    problem = Problem(
        type=type_,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=current_request_id(),
        error=code,
        message=detail,
    )
    if errors is not None:
        problem.errors = [FieldError(e["field"], e["in"], e["message"]) for e in errors]
    if rule is not None:
        problem.rule = rule
    if buy_instead is not None:
        problem.buy_instead = buy_instead
    return Response(problem, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter's name on the wire (`Idempotency-Key`), not its Python name."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except Exception:  # unrouted request: no handler to ask
        return key
    return getattr(getattr(parameter, "kwarg_definition", None), "name", None) or key


_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<name>[^`]+)`$")


def _field_errors(request: Request[Any, Any, Any], extra: Sequence[Any]) -> list[dict[str, str]]:
    """Litestar's `{"key", "source", "message"}` items as `{"field", "in", "message"}`."""
    items = []
    for error in extra:
        source = error.get("source") or "body"
        where = str(getattr(source, "value", source))
        key = str(error.get("key") or "")
        message = str(error.get("message", ""))
        if where == "body" and key == "data":
            # The body as a whole: missing, or failing a rule that spans fields.
            key = "body"
            if message == "'data'":
                message = "a JSON body is required"
        elif where != "body":
            key = _wire_name(request, key)
        if where == "body" and (named := _NAMED_FIELD.match(message)):
            # msgspec puts an unknown or missing field's name in the message, not the path.
            key = named["name"] if key == "body" else f"{key}.{named['name']}"
        items.append({"field": key or where, "in": where, "message": message})
    return items


def _problem_error(request: Request[Any, Any, Any], exc: ProblemError) -> Response[Problem]:
    return problem_response(
        request,
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        code=exc.code,
        type_=exc.type,
        headers=exc.headers,
        errors=exc.errors,
        rule=exc.rule if isinstance(exc, RuleRefusal) else None,
        buy_instead=exc.buy_instead if isinstance(exc, ShopOffer) else None,
    )


def _validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Problem]:
    # Litestar answers bad input with 400; every service here says 422 with field errors.
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = _field_errors(request, extra)
    if not errors:
        errors = [{"field": "body", "in": "body", "message": str(exc.detail)}]
    return problem_response(
        request,
        status=422,
        title="Validation failed",
        detail=validation_detail(errors),
        code=VALIDATION_ERROR_CODE,
        type_=VALIDATION_ERROR,
        errors=errors,
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = HTTPStatus(exc.status_code)
    if status == HTTPStatus.BAD_REQUEST:
        # Litestar's 400s are bodies it could not parse (malformed JSON).
        return _validation_error(request, ValidationException(detail=exc.detail))
    return problem_response(
        request,
        status=status.value,
        title=status.phrase,
        detail=http_error_detail(
            status, str(exc.detail), method=request.method, path=request.url.path
        ),
        code=http_error_code(status),
        headers=dict(exc.headers or {}),
    )


def _database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    logger.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        request,
        status=503,
        title="Service Unavailable",
        detail=database_unavailable_detail("orders"),
        code=SERVICE_UNAVAILABLE_CODE,
        type_=DATABASE_UNAVAILABLE,
        headers={"Retry-After": DATABASE_RETRY_AFTER_S},
    )


def _unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=500,
        title="Internal Server Error",
        detail=UNEXPECTED_ERROR_DETAIL,
        code=INTERNAL_ERROR_CODE,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ProblemError: _problem_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    # SQLAlchemy's for the sessions, psycopg's (a pool timeout included) for the read pool.
    OperationalError: _database_unavailable,
    InterfaceError: _database_unavailable,
    PoolTimeoutError: _database_unavailable,
    psycopg.OperationalError: _database_unavailable,
    psycopg.InterfaceError: _database_unavailable,
    Exception: _unexpected_error,
}
