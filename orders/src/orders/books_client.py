"""Client of the books service: one batch lookup per order, bounded in time, never a hang.

Every lookup runs inside a circuit breaker (purgatory): after `books_breaker_threshold`
failed lookups in a row, lookups fail at once for `books_breaker_reset_s`, then one is let
through to probe while the others still fail at once. Inside the breaker, connection
errors and 5xx answers are retried with jittered backoff (stamina) — safe because the
lookup is a GET — and the whole lookup, retries included, is cut off after
`books_timeout_s`.

The requests go out through aiohttp: httpx's `AsyncClient` spent 0.76-0.81 ms of CPU on
each, aiohttp 0.08 (README, Benchmarks), and every order makes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

import aiohttp
import msgspec
import stamina
from purgatory import AsyncCircuitBreakerFactory, Event
from purgatory.domain.messages.events import ContextChanged
from purgatory.domain.model import OpenedState

from orders.config import Settings
from orders.errors import BooksContractBroken, BooksUnavailable
from orders.metrics import (
    BOOKS_CLIENT_LATENCY,
    BOOKS_CLIENT_REQUESTS,
    CIRCUIT_BREAKER_STATE,
    CIRCUIT_STATES,
)
from servicekit.logs import REQUEST_ID_HEADER, current_request_id

BOOKS_CIRCUIT = "books"
MAX_UNIT_PRICE = Decimal("99999999.99")
logger = logging.getLogger(__name__)


class BookSnapshot(msgspec.Struct):
    """What an order keeps of a book: the fields of the books API it needs."""

    id: int
    title: str
    author: str
    price: Decimal
    active: bool
    # Copies books has now; None when books does not track this book's stock.
    stock: int | None = None
    # Lendable copies; None (or 0) when the book is not lent out.
    copies_total: int | None = None
    copies_available: int | None = None
    # The item type lending policies are matched on.
    format: str = "book"

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.price <= MAX_UNIT_PRICE or self.price != self.price.quantize(
            Decimal("0.01")
        ):
            raise ValueError(f"price {self.price} is not a valid amount")


class _BookPage(msgspec.Struct):
    data: list[BookSnapshot]


class _ProbeInFlight(Exception):
    """Another lookup is probing whether books is back."""


class _BooksServerError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"books answered {status}")


class _UnexpectedAnswer(Exception):
    pass


def _retryable(exc: Exception) -> bool:
    # aiohttp's connect and read timeouts are ClientErrors too.
    return isinstance(exc, aiohttp.ClientError | _BooksServerError)


def create_breakers(settings: Settings) -> AsyncCircuitBreakerFactory:
    breakers = AsyncCircuitBreakerFactory(
        default_threshold=settings.books_breaker_threshold,
        default_ttl=settings.books_breaker_reset_s,
        # A client that hangs up is not a sign that books is unwell.
        exclude=[asyncio.CancelledError],
    )
    breakers.add_listener(_track_breaker_state)
    return breakers


def _track_breaker_state(
    name: str,
    event_type: Literal["circuit_breaker_created", "state_changed", "failed", "recovered"],
    event: Event,
) -> None:
    if event_type == "circuit_breaker_created":
        CIRCUIT_BREAKER_STATE.labels(name).set(CIRCUIT_STATES["closed"])
    elif isinstance(event, ContextChanged):
        CIRCUIT_BREAKER_STATE.labels(name).set(CIRCUIT_STATES[event.state])
        logger.warning("circuit breaker %s is now %s", name, event.state)


class BooksClient:
    def __init__(self, breakers: AsyncCircuitBreakerFactory, settings: Settings) -> None:
        self.breakers = breakers
        self.settings = settings
        self._url = settings.books_url.rstrip("/")
        # Opened by the first request: aiohttp binds a session to the running event loop.
        self._session: aiohttp.ClientSession | None = None
        # purgatory lets every caller through once the breaker's reset time is up; one
        # probe is enough to learn whether books is back, so the others are refused
        # while it runs (purgatory has no option for this).
        self._probe = asyncio.Lock()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The process-wide connection pool to books; each connect and each read is
        bounded by `books_timeout_s`."""
        if self._session is None:
            timeout = self.settings.books_timeout_s
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.books_pool_size),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def answers(self, *, timeout_s: float) -> bool:
        """Whether books says it is healthy within `timeout_s` (readiness)."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self.http.get(f"{self._url}/health") as response:
                    await response.read()
        except (aiohttp.ClientError, TimeoutError):
            return False
        return response.status == 200

    async def active_books(self, *, book_ids: Sequence[int]) -> dict[int, BookSnapshot]:
        """The active books among `book_ids`; missing and soft-deleted ones are absent."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            breaker = await self.breakers.get_breaker(BOOKS_CIRCUIT)
            probing = breaker.context.state != "closed"
            if probing and self._probe.locked():
                raise _ProbeInFlight()
            async with self._probe if probing else contextlib.nullcontext(), breaker:
                books = await self._lookup(book_ids)
        except OpenedState as exc:
            outcome = "circuit_open"
            reopens_in = exc.opened_at + self.settings.books_breaker_reset_s - time.time()
            raise BooksUnavailable(retry_after=max(1, math.ceil(reopens_in))) from exc
        except _ProbeInFlight as exc:
            outcome = "circuit_open"
            raise BooksUnavailable(retry_after=1) from exc
        except (aiohttp.ClientError, _BooksServerError, TimeoutError) as exc:
            outcome = "unavailable"
            logger.warning("books lookup failed: %r", exc)
            raise BooksUnavailable(retry_after=1) from exc
        except (_UnexpectedAnswer, msgspec.ValidationError, msgspec.DecodeError) as exc:
            outcome = "bad_answer"
            logger.error("books answered outside its contract: %s", exc)
            raise BooksContractBroken() from exc
        finally:
            BOOKS_CLIENT_REQUESTS.labels(outcome).inc()
            BOOKS_CLIENT_LATENCY.labels(outcome).observe(time.perf_counter() - started)
        return books

    async def _lookup(self, book_ids: Sequence[int]) -> dict[int, BookSnapshot]:
        params = {"ids": ",".join(map(str, book_ids)), "limit": str(max(len(book_ids), 1))}
        request_id = current_request_id()
        headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
        async with asyncio.timeout(self.settings.books_timeout_s):
            async for attempt in stamina.retry_context(
                on=_retryable,
                attempts=self.settings.books_retry_attempts,
                timeout=None,
                wait_initial=self.settings.books_retry_wait_initial_s,
                wait_max=self.settings.books_retry_wait_max_s,
                wait_jitter=self.settings.books_retry_jitter_s,
            ):
                with attempt:
                    status, body = await self._get(params, headers)
                    if status >= 500:
                        raise _BooksServerError(status)
        if status != 200:
            raise _UnexpectedAnswer(f"GET /v1/books answered {status}")
        page = msgspec.json.decode(body, type=_BookPage)
        return {book.id: book for book in page.data if book.active}

    async def _get(self, params: dict[str, str], headers: dict[str, str]) -> tuple[int, bytes]:
        async with self.http.get(f"{self._url}/v1/books", params=params, headers=headers) as r:
            return r.status, await r.read()
