"""Builds the books FastAPI application."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from books.catalog.router import router as catalog_router
from books.config import ALIASES, Settings, get_settings
from books.covers.router import router as covers_router
from books.db import close_databases, create_engine
from books.errors import install_error_handlers
from books.http import BodyLimit
from books.http_metrics import HttpMetrics
from books.inventory.router import ledger_router
from books.inventory.router import router as inventory_router
from books.item_types.router import router as item_types_router
from books.lending.router import router as lending_router
from books.system import router as system_router
from servicekit.access import create_gate
from servicekit.aliases import aliases_in_use
from servicekit.database import create_read_pool, create_sessionmaker
from servicekit.logs import REQUEST_ID_HEADER, configure_logging, is_acceptable_request_id
from servicekit.problems import errors_description
from servicekit.tracing import UNTRACED_PATHS, RequestIdOnSpan, configure_tracing, flush_async

logger = logging.getLogger(__name__)

# What a multipart cover upload adds to the image: the book's fields and the boundaries.
BODY_OVERHEAD_BYTES = 1024 * 1024

# FastAPI's own OpenTelemetry support stays off: the spans come from the contrib instrumentor
# (`instrument`), with which it would step aside anyway, and the metrics from Prometheus.
# Left on, it looks the OpenTelemetry providers up on every request.
WITHOUT_NATIVE_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

DESCRIPTION = """The catalog: books, prices and covers.

"""


def create_app(settings: Settings | None = None) -> FastAPI:
    from_env = settings is None
    settings = settings or get_settings()
    configure_logging("books", settings.log_level)
    if from_env:
        for note in aliases_in_use(os.environ, ALIASES):
            logger.warning(note)
    tracing = configure_tracing("books")
    engine = create_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await close_databases(app)
        await flush_async()

    app = FastAPI(
        title="Bookstore books API",
        version="1.0.0",
        description=DESCRIPTION + errors_description("books", "servicekit"),
        lifespan=lifespan,
        telemetry=WITHOUT_NATIVE_TELEMETRY,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.reads = create_read_pool(settings, service="books")
    app.state.gate = create_gate(app.state.reads, settings, service="books")
    app.state.sessionmaker = create_sessionmaker(engine)

    install_error_handlers(app)
    # Busiest first: FastAPI tries the routes in order, and each one tried costs a request
    # some 6,000-15,000 instructions (the four probes first had cost a GET by id 6%).
    app.include_router(catalog_router)
    # Only the workers call them; the public OpenAPI document does not mention them.
    app.include_router(inventory_router, include_in_schema=False)
    app.include_router(lending_router, include_in_schema=False)
    app.include_router(covers_router)
    app.include_router(item_types_router)
    app.include_router(ledger_router)
    app.include_router(system_router)
    # FastAPI put its documentation's routes first; they go last. (An included router has no
    # `path`; a page turned off has no URL: neither may count as documentation.)
    urls = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    documentation = {url for url in urls if url is not None}
    app.router.routes.sort(key=lambda route: getattr(route, "path", None) in documentation)
    if tracing:
        instrument(app)
    # The largest body is a cover upload; anything bigger is a 413.
    app.add_middleware(BodyLimit, max_bytes=settings.cover_max_bytes + BODY_OVERHEAD_BYTES)
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        validator=is_acceptable_request_id,
    )
    # Probes and scrapes are the machinery's requests, not the API users'.
    app.add_middleware(HttpMetrics, excluded=frozenset(UNTRACED_PATHS))
    return app


def instrument(app: FastAPI) -> None:
    """A server span per request, named by its route template. The instrumentor puts its
    middleware around all others; RequestIdOnSpan, added before the request-id middleware,
    runs inside both."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app.add_middleware(RequestIdOnSpan)
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=",".join(f"{path}$" for path in UNTRACED_PATHS),
        exclude_spans=["receive", "send"],
    )
