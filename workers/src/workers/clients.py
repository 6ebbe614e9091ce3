"""HTTP clients of the books and orders internal APIs, as the jobs use them.

Every call carries the service key and the request id of the job being run, has a timeout,
and turns the answer into one of three things: a parsed result, `ServiceUnavailable`
(network error, timeout, 5xx, 429: retrying later may work) or `PermanentJobError` (any
other 4xx: retrying the same request cannot help). The one 409 each caller expects comes
back as a value instead.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError, model_validator

from servicekit.logs import REQUEST_ID_HEADER, current_request_id
from servicekit.service_key import SERVICE_KEY_HEADER
from workers.config import Settings, get_settings
from workers.errors import PermanentJobError, ServiceUnavailable

# Answers that say "not now" rather than "never".
RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})

ModelT = TypeVar("ModelT", bound=BaseModel)


class StockLine(BaseModel):
    book_id: int
    quantity: int


class ShortageReason(StrEnum):
    INSUFFICIENT_STOCK = "insufficient_stock"
    BOOK_NOT_FOUND = "book_not_found"
    BOOK_INACTIVE = "book_inactive"


class Shortage(BaseModel):
    book_id: int
    requested: int
    available: int
    reason: ShortageReason


class ReservationStatus(StrEnum):
    RESERVED = "reserved"
    REJECTED = "rejected"
    RELEASED = "released"


class Reservation(BaseModel):
    reference: str
    status: ReservationStatus
    lines: list[StockLine]
    shortages: list[Shortage]

    @model_validator(mode="after")
    def rejected_names_a_shortage(self) -> Reservation:
        if self.status is ReservationStatus.REJECTED and not self.shortages:
            raise ValueError("a rejected reservation must list its shortages")
        return self


class ReleaseStatus(StrEnum):
    RELEASED = "released"
    NOT_RESERVED = "not_reserved"


class Release(BaseModel):
    reference: str
    status: ReleaseStatus
    lines: list[StockLine]


class CopyStatus(StrEnum):
    CHECKED_OUT = "checked_out"
    CHECKED_IN = "checked_in"
    PASSED_ON = "passed_on"
    UNAVAILABLE = "unavailable"
    NOT_LENDABLE = "not_lendable"
    BOOK_NOT_FOUND = "book_not_found"
    BOOK_INACTIVE = "book_inactive"
    NOT_CHECKED_OUT = "not_checked_out"
    TRANSFERRED = "transferred"
    # A transfer's target holds another copy already (books answers 409).
    TARGET_HAS_COPY = "target_has_copy"


class CopyMove(BaseModel):
    """Books' answer to a check-out, check-in or transfer of a copy."""

    status: CopyStatus


class Borrow(BaseModel):
    """The part of orders' borrow JSON the jobs read."""

    id: int
    status: str
    hold_id: int | None = None


class Hold(BaseModel):
    id: int
    status: str


class HandOver(BaseModel):
    hold: Hold | None


class Closing(BaseModel):
    id: int
    status: str
    loans_moved: int
    holds_moved: int


class Sweep(BaseModel):
    expired_holds: int
    resumed_holds: int
    lost_loans: int
    notices: int
    more: bool


class Settled(BaseModel):
    redriven: int
    given_up: int


class Reconciled(BaseModel):
    orders: Settled
    borrows: Settled
    releases: Settled
    more: bool


class Order(BaseModel):
    """The part of orders' order JSON the jobs read."""

    id: int
    status: str
    rejection_reason: str | None = None


class ServiceClient:
    """Internal calls to one service."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        service_key: str,
        timeout: httpx.Timeout,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.service = service
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={SERVICE_KEY_HEADER: service_key},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: Any = None, *, conflict_ok: bool = False) -> httpx.Response:
        """POST a JSON body (or none); a 409 comes back only when `conflict_ok`."""
        headers = {}
        if request_id := current_request_id():
            headers[REQUEST_ID_HEADER] = request_id
        try:
            response = self._http.post(path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"{self.service} {path}: {exc!r}") from exc
        status = response.status_code
        if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
            detail = _detail(response)
            raise ServiceUnavailable(f"{self.service} {path} answered {status}: {detail}")
        if status == 409 and conflict_ok:
            return response
        if status >= 400:
            raise PermanentJobError(
                f"{self.service} {path} refused the request with {status}: {_detail(response)}"
            )
        return response

    def parse(self, model: type[ModelT], response: httpx.Response) -> ModelT:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            # A service answering 2xx with another shape is a deployment mismatch.
            raise PermanentJobError(
                f"{self.service} {response.request.url.path} answered an unexpected body: {exc}"
            ) from exc


class BooksClient:
    """The books internal stock API."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def reserve_stock(self, *, reference: str, lines: list[StockLine]) -> Reservation:
        """All lines or none; a repeated reference gets its first outcome back."""
        body = {"reference": reference, "lines": [line.model_dump() for line in lines]}
        response = self.client.post("/internal/v1/stock/reservations", body)
        return self.client.parse(Reservation, response)

    def release_stock(self, *, reference: str) -> Release:
        """Give back what a reference reserved; repeats change nothing."""
        response = self.client.post("/internal/v1/stock/releases", {"reference": reference})
        return self.client.parse(Release, response)

    def check_out_copy(self, *, reference: str, book_id: int) -> CopyStatus:
        """Take a copy off the shelf for `reference`; a repeat takes nothing more."""
        body = {"reference": reference, "book_id": book_id}
        response = self.client.post("/internal/v1/copies/checkouts", body)
        return self.client.parse(CopyMove, response).status

    def check_in_copy(self, *, reference: str) -> CopyStatus:
        """Put the copy of `reference` back on the shelf; a repeat changes nothing."""
        response = self.client.post("/internal/v1/copies/checkins", {"reference": reference})
        return self.client.parse(CopyMove, response).status

    def transfer_copy(self, *, from_reference: str, to_reference: str) -> CopyStatus:
        """Hand a copy from one reference to another without shelving it."""
        body = {"from_reference": from_reference, "to_reference": to_reference}
        response = self.client.post("/internal/v1/copies/transfers", body, conflict_ok=True)
        if response.status_code == 409:
            return CopyStatus.TARGET_HAS_COPY
        return self.client.parse(CopyMove, response).status


class OrdersClient:
    """The orders internal status API."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def confirm_order(self, *, order_id: int) -> Order | None:
        """The confirmed order, or None when its status forbids it (cancelled, or given up)."""
        response = self.client.post(f"/internal/v1/orders/{order_id}/confirm", conflict_ok=True)
        return None if response.status_code == 409 else self.client.parse(Order, response)

    def reject_order(self, *, order_id: int, reason: str, cause: ShortageReason) -> Order | None:
        """The rejected order, or None when its status forbids it (it was cancelled)."""
        response = self.client.post(
            f"/internal/v1/orders/{order_id}/reject",
            {"reason": reason, "cause": cause},
            conflict_ok=True,
        )
        return None if response.status_code == 409 else self.client.parse(Order, response)

    def stock_released(self, *, order_id: int) -> None:
        """Tell orders the order's stock is back at books (so the reconciler stops asking)."""
        self.client.post(f"/internal/v1/orders/{order_id}/stock-released")

    def reconcile(self) -> Reconciled:
        """One batch of the stalled orders and borrows re-driven or given up."""
        return self.client.parse(Reconciled, self.client.post("/internal/v1/reconcile"))


class LendingClient:
    """The orders internal lending API: each call is idempotent, and a 409 (the borrow or
    hold has moved on without this job) comes back as None."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def activate_borrow(self, *, borrow_id: int) -> Borrow | None:
        return self._borrow(f"/internal/v1/borrows/{borrow_id}/activate")

    def hold_borrow(self, *, borrow_id: int) -> Borrow | None:
        return self._borrow(f"/internal/v1/borrows/{borrow_id}/hold")

    def reject_borrow(self, *, borrow_id: int, reason: str) -> Borrow | None:
        return self._borrow(f"/internal/v1/borrows/{borrow_id}/reject", {"reason": reason})

    def hold_ready(self, *, hold_id: int) -> Hold | None:
        response = self.client.post(f"/internal/v1/holds/{hold_id}/ready", conflict_ok=True)
        return None if response.status_code == 409 else self.client.parse(Hold, response)

    def hand_over(self, *, book_id: int, from_reference: str) -> Hold | None:
        """The waiting hold that now gets the copy of `from_reference`, if any."""
        body = {"book_id": book_id, "from_reference": from_reference}
        response = self.client.post("/internal/v1/holds/hand-over", body)
        return self.client.parse(HandOver, response).hold

    def report_delivery(
        self,
        *,
        notice_ids: list[int],
        attempt: int,
        sent: bool,
        error: str | None = None,
        final: bool = False,
    ) -> None:
        """How one attempt to mail these notices went; a repeat changes nothing."""
        body = {
            "notice_ids": notice_ids,
            "attempt": attempt,
            "outcome": "sent" if sent else "failed",
            "error": error,
            "final": final,
        }
        self.client.post("/internal/v1/notices/deliveries", body)

    def move_closing(self, *, closing_id: int) -> Closing:
        """One batch of a closing's moves."""
        response = self.client.post(f"/internal/v1/closings/{closing_id}/move")
        return self.client.parse(Closing, response)

    def sweep(self) -> Sweep:
        return self.client.parse(Sweep, self.client.post("/internal/v1/library/sweep"))

    def _borrow(self, path: str, body: Any = None) -> Borrow | None:
        response = self.client.post(path, body, conflict_ok=True)
        return None if response.status_code == 409 else self.client.parse(Borrow, response)


def _detail(response: httpx.Response) -> str:
    """The problem+json detail (or the start of whatever came back), for the job's error."""
    try:
        document = response.json()
    except ValueError:
        return response.text[:200]
    detail = document.get("detail") if isinstance(document, dict) else None
    return detail if isinstance(detail, str) else response.text[:200]


def service_client(service: str, base_url: str, settings: Settings) -> ServiceClient:
    if settings.service_key is None:
        raise PermanentJobError("SERVICE_KEY is not set; the internal APIs refuse every call")
    return ServiceClient(
        service,
        base_url,
        service_key=settings.service_key.get_secret_value(),
        timeout=httpx.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s),
    )


# One client per process, built on first use: a forked process never shares a parent's
# connections, and a long-lived worker process keeps its connections alive between jobs.
@cache
def books() -> BooksClient:
    settings = get_settings()
    return BooksClient(service_client("books", settings.books_url, settings))


@cache
def orders() -> OrdersClient:
    settings = get_settings()
    return OrdersClient(service_client("orders", settings.orders_url, settings))


@cache
def lending() -> LendingClient:
    settings = get_settings()
    return LendingClient(service_client("orders", settings.orders_url, settings))


def close_clients() -> None:
    """Close the pooled connections; the next job builds fresh clients from the settings."""
    for factory in (books, orders, lending):
        if factory.cache_info().currsize:
            factory().client.close()
        factory.cache_clear()
