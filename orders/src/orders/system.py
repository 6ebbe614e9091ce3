"""Probes: `/livez` (liveness), `/ready` (readiness) and the predecessor's `/health`."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from orders.http import DocumentedOperation
from servicekit.database import database_answers

# A probe answers within this, whatever the database or books do.
PROBE_TIMEOUT_S = 1.0


class Health(msgspec.Struct):
    """The predecessor's health body, unchanged for the checks written against it."""

    status: str
    services: dict[str, str]


async def _dependencies_up(state: State) -> tuple[bool, bool]:
    """Whether the database and books answer, asked at once."""
    database, books = await asyncio.gather(
        database_answers(state.engine, timeout_s=PROBE_TIMEOUT_S),
        state.books_client.answers(timeout_s=PROBE_TIMEOUT_S),
    )
    return database, books


# Left out of the OpenAPI document like /metrics: it is for the orchestrator, not clients.
@get("/livez", include_in_schema=False)
async def livez() -> dict[str, str]:
    """Liveness: the process answers (no dependency is asked; probe this to restart)."""
    return {"status": "ok"}


@get(
    "/health",
    tags=["system"],
    operation_class=DocumentedOperation,
    responses={
        503: ResponseSpec(
            data_container=Health,
            description="The database or the books service is down (it says unhealthy).",
            generate_examples=False,
        )
    },
)
async def health(state: State) -> Response[Health]:
    """Health as the predecessor reported it: the database and books, each healthy or not."""
    database, books = await _dependencies_up(state)
    word = {True: "healthy", False: "unhealthy"}
    body = Health(
        status=word[database and books],
        services={"database": word[database], "books": word[books]},
    )
    return Response(body, status_code=200 if database and books else 503)


@get(
    "/ready",
    tags=["system"],
    operation_class=DocumentedOperation,
    responses={
        503: ResponseSpec(
            data_container=dict[str, str],
            description="The database or the books service is down (which one is named).",
            generate_examples=False,
        )
    },
)
async def ready(state: State) -> Response[dict[str, str]]:
    """Readiness: the database and the books service answer."""
    database, books = await _dependencies_up(state)
    body = {
        "status": "ok" if database and books else "unavailable",
        "database": "up" if database else "down",
        "books": "up" if books else "down",
    }
    return Response(body, status_code=200 if database and books else 503)
