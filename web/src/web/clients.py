"""Typed clients of the books and orders APIs: the only way the site reaches either.

Each answer is decoded into the structs below (msgspec), which name just the fields the
pages use; a contract test checks them against the services' OpenAPI documents, so a
change of contract fails a test, not a page. Problems (RFC 9457, with the `error` code
and the `message`) become `ApiProblem`; an API that is down, slow or answering 5xx
becomes `ApiUnavailable`, which the site renders as a friendly 503 within its timeout.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
from pydantic import SecretStr

from servicekit.logs import REQUEST_ID_HEADER, current_request_id

T = TypeVar("T")


class CoverImage(msgspec.Struct):
    url: str


class Book(msgspec.Struct):
    id: int
    title: str
    author: str
    description: str
    price: Decimal
    active: bool
    image: CoverImage | None
    stock: int | None
    copies_total: int | None
    copies_available: int | None


class BookPage(msgspec.Struct):
    data: list[Book]


class OrderItem(msgspec.Struct):
    book_id: int
    book_title: str
    book_author: str
    quantity: int
    unit_price: Decimal
    total_price: Decimal


OrderStatus = Literal["pending", "confirmed", "rejected", "cancelled"]


class Order(msgspec.Struct):
    id: int
    status: OrderStatus
    rejection_reason: str | None
    customer_id: int | None
    total_price: Decimal
    items: list[OrderItem]
    created_at: datetime


class OrderPage(msgspec.Struct):
    data: list[Order]


class Member(msgspec.Struct):
    id: int
    name: str
    email: str
    status: Literal["active", "blocked"]
    max_loans: int
    loans_out: int
    created_at: datetime


class MemberPage(msgspec.Struct):
    data: list[Member]
    total: int


class Borrow(msgspec.Struct):
    id: int
    member_id: int
    book_id: int
    book_title: str
    book_author: str
    status: Literal["pending", "active", "returned", "held", "rejected", "lost"]
    overdue: bool
    rejection_reason: str | None
    hold_id: int | None
    requested_at: datetime
    borrowed_at: datetime | None
    due_at: datetime | None
    returned_at: datetime | None
    renewals: int
    late_fee: Decimal | None


class BorrowPage(msgspec.Struct):
    data: list[Borrow]
    total: int


class Hold(msgspec.Struct):
    id: int
    member_id: int
    book_id: int
    book_title: str
    book_author: str
    status: Literal["waiting", "suspended", "ready", "fulfilled", "cancelled", "expired"]
    position: int | None
    pickup_by: datetime | None
    created_at: datetime


class HoldPage(msgspec.Struct):
    data: list[Hold]
    total: int


class LibrarySummary(msgspec.Struct):
    loans_out: int
    overdue: int
    holds_waiting: int
    holds_ready: int
    members: int
    members_borrowing: int
    utilization: float


class PopularBook(msgspec.Struct):
    book_id: int
    book_title: str
    book_author: str
    loans: int


class DailyLoans(msgspec.Struct):
    day: date
    loans: int


class FieldError(msgspec.Struct):
    field: str
    message: str


class _Problem(msgspec.Struct):
    title: str = ""
    detail: str | None = None
    error: str | None = None
    message: str | None = None
    errors: list[FieldError] = []


class ApiUnavailable(Exception):
    """The API could not be asked (down, too slow, or failing with a 5xx)."""

    def __init__(self, service: str) -> None:
        super().__init__(f"the {service} service is unavailable")
        self.service = service


class ApiProblem(Exception):
    """The API refused the request, naming the rule (its problem+json)."""

    def __init__(self, status: int, code: str, message: str, errors: list[FieldError]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field_errors = {e.field: e.message for e in errors}


class Page(msgspec.Struct):
    """One page of a list and the site-relative query strings of its neighbours, taken
    from the API's `Link` header (its filters kept, whatever the paging scheme)."""

    items: list[Any]
    total: int | None
    next: str | None
    prev: str | None


class Api:
    def __init__(self, service: str, base_url: str, *, timeout_s: float, key: SecretStr | None):
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self.service = service
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout_s), headers=headers
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[T, httpx.Response]:
        headers = dict(headers or {})
        if request_id := current_request_id():
            headers[REQUEST_ID_HEADER] = request_id
        params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self.client.request(
                method, path, params=params, json=body, headers=headers
            )
        except httpx.HTTPError as error:
            raise ApiUnavailable(self.service) from error
        if response.status_code >= 500:
            raise ApiUnavailable(self.service)
        if response.status_code >= 400:
            problem = msgspec.json.decode(response.content, type=_Problem)
            raise ApiProblem(
                response.status_code,
                problem.error or "",
                problem.message or problem.detail or problem.title,
                problem.errors,
            )
        return msgspec.json.decode(response.content, type=answer), response

    async def page(self, path: str, answer: type[Any], params: dict[str, Any]) -> Page:
        decoded, response = await self.call("GET", path, answer, params=params)
        total = response.headers.get("X-Total-Count")
        return Page(
            items=decoded.data,
            total=int(total) if total is not None else None,
            next=_query_of(response.links.get("next")),
            prev=_query_of(response.links.get("prev")),
        )


def _query_of(link: dict[str, str] | None) -> str | None:
    return urlsplit(link["url"]).query if link else None
