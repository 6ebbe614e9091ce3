"""Builds the orders Litestar application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, cast

from asgi_correlation_id import CorrelationIdMiddleware
from litestar import Controller, Litestar, Response, get
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp, Middleware, Receive, Scope, Send
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orders.books_client import BooksClient, create_breakers
from orders.config import ALIASES, Settings, get_settings
from orders.db import create_engine, provide_session
from orders.http import document_structs, exact_integer_bounds, refuse_unknown_query
from orders.idempotency import IdempotencyStore, purge_forever
from orders.lending.controllers import (
    BorrowController,
    HoldController,
    LedgerController,
    LibraryController,
    MemberController,
)
from orders.lending.internal import InternalLendingController
from orders.lending.notice_controllers import NoticeController
from orders.lending.rule_controllers import (
    CalendarController,
    ClosingController,
    MemberCategoryController,
    PolicyController,
)
from orders.ordering.controllers import OrderController
from orders.ordering.internal import InternalOrderController
from orders.problems import EXCEPTION_HANDLERS
from orders.reconcile import ReconcileController
from orders.saga import RedrivePolicy
from orders.security import SECURITY_COMPONENTS, admit
from orders.system import health, livez, ready
from servicekit.access import create_gate
from servicekit.aliases import aliases_in_use
from servicekit.database import create_read_pool, create_sessionmaker
from servicekit.logs import REQUEST_ID_HEADER, configure_logging, is_acceptable_request_id
from servicekit.metrics import service_registry
from servicekit.problems import errors_description
from servicekit.tracing import UNTRACED_PATHS, RequestIdOnSpan, configure_tracing, flush_async

logger = logging.getLogger(__name__)

DESCRIPTION = """Orders of books, priced from the catalog at the time they are placed, and the
library: members, loans, holds and their figures.

"""


class MetricsController(Controller):
    path = "/metrics"

    @get(include_in_schema=False, sync_to_thread=True)
    def metrics(self) -> Response[bytes]:
        """The service's metrics, of every process when there are several (reading the
        sample files blocks: in a thread)."""
        return Response(generate_latest(service_registry()), media_type=CONTENT_TYPE_LATEST)


async def admit_known_query(
    connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler
) -> None:
    """The app's guards, one after the other: the caller admitted (`admit`: 401, 429),
    then its query checked (`refuse_unknown_query`: 422). One guard, not two, because
    Litestar hands every guard a copy of the route handler (`copy.copy` of a large
    object, about 2% of the CPU of a GET of an order each, by py-spy)."""
    await admit(connection, route_handler)
    await refuse_unknown_query(connection, route_handler)


def create_app(settings: Settings | None = None) -> Litestar:
    from_env = settings is None
    settings = settings or get_settings()
    configure_logging("orders", settings.log_level)
    if from_env:
        for note in aliases_in_use(os.environ, ALIASES):
            logger.warning(note)
    tracing = configure_tracing("orders")
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    reads = create_read_pool(settings, service="orders")
    books_client = BooksClient(create_breakers(settings), settings)
    idempotency_store = (
        IdempotencyStore(
            sessionmaker,
            reads,
            ttl_s=settings.idempotency_ttl_s,
            lock_timeout_s=settings.idempotency_lock_timeout_s,
        )
        if settings.idempotency_enabled
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        purger = (
            asyncio.create_task(
                purge_forever(idempotency_store, interval_s=settings.idempotency_purge_interval_s)
            )
            if idempotency_store is not None
            else None
        )
        try:
            yield
        finally:
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            await books_client.aclose()
            await engine.dispose()
            await reads.close()
            await flush_async()

    prometheus = PrometheusConfig(
        app_name="orders",
        prefix="orders",
        group_path=True,
        exclude=["^/metrics", "^/health", "^/livez", "^/ready"],
    )
    app = Litestar(
        route_handlers=[
            health,
            livez,
            ready,
            OrderController,
            MemberController,
            LedgerController,
            BorrowController,
            HoldController,
            LibraryController,
            NoticeController,
            MemberCategoryController,
            PolicyController,
            CalendarController,
            ClosingController,
            InternalOrderController,
            InternalLendingController,
            ReconcileController,
            MetricsController,
        ],
        dependencies={"session": Provide(provide_session)},
        guards=[admit_known_query],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[prometheus.middleware, *(tracing_middleware() if tracing else [])],
        lifespan=[lifespan],
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="Bookstore orders and lending API",
            version="1.0.0",
            description=DESCRIPTION + errors_description("orders", "servicekit"),
            path="/docs",
            use_handler_docstrings=True,
            render_plugins=[SwaggerRenderPlugin()],
            components=SECURITY_COMPONENTS,
        ),
    )
    document_structs(app.openapi_schema)
    exact_integer_bounds(app.openapi_schema)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.reads = reads
    app.state.gate = create_gate(reads, settings, service="orders")
    app.state.books_client = books_client
    app.state.idempotency_store = idempotency_store
    app.state.redrive_policy = RedrivePolicy.from_settings(settings)
    # Litestar answers unrouted requests (404, 405) before any app middleware runs, so
    # the request id is set around its whole ASGI handler: every response carries one.
    app.asgi_handler = cast(
        "ASGIApp",
        CorrelationIdMiddleware(
            cast("Any", app.asgi_handler),
            header_name=REQUEST_ID_HEADER,
            validator=is_acceptable_request_id,
        ),
    )
    return app


def tracing_middleware() -> list[Middleware]:
    """A server span per request, with the request id (set around the whole app, see
    above) on it, named by the route template.

    Litestar wraps its whole router in the tracing middleware, so the span starts before
    routing and can only be named by the raw path (a name per order id); until routing
    renames it, it is named by the method alone, as OpenTelemetry names a request that
    matched no route.
    """
    from litestar.plugins.opentelemetry import OpenTelemetryConfig

    config = OpenTelemetryConfig(
        exclude=[f"^{path}$" for path in UNTRACED_PATHS],
        exclude_spans=["receive", "send"],
        scope_span_details_extractor=lambda scope: (str(scope.get("method", "HTTP")), {}),
    )
    return [config.middleware, SpanNamedByRoute, RequestIdOnSpan]


class SpanNamedByRoute:
    """Renames the server span `POST /v1/orders/{order_id}/cancel` once routed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if template := scope.get("path_template"):
            span = trace.get_current_span()
            span.update_name(f"{scope.get('method', 'HTTP')} {template}")
            span.set_attribute("http.route", template)
        await self.app(scope, receive, send)
