"""Liveness and readiness probes."""

from __future__ import annotations

import httpx
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orders.http import DocumentedOperation

READY_TIMEOUT_S = 1.0


@get("/health", tags=["system"], operation_class=DocumentedOperation)
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def _database_up(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def _books_up(http: httpx.AsyncClient) -> bool:
    try:
        response = await http.get("/health", timeout=READY_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


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
    database = await _database_up(state.engine)
    books = await _books_up(state.books_http)
    body = {
        "status": "ok" if database and books else "unavailable",
        "database": "up" if database else "down",
        "books": "up" if books else "down",
    }
    return Response(body, status_code=200 if database and books else 503)
