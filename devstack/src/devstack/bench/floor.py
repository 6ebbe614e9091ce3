"""The framework's floor under `GET /v1/books/{id}`: FastAPI on uvicorn with nothing of
ours (no middleware, dependency, access log, metrics, rate limit or problem handler), one
psycopg pool in autocommit, the API's own statement, the row encoded by msgspec.

`make bench` serves it with as many processes as the API runs and loads it like the API,
so that every run shows how much of the gap between the API and the raw driver is the
framework's and how much is the API's own path through it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import msgspec
from fastapi import FastAPI, Response
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from books.catalog.reads import BOOK_BY_ID
from books.config import get_settings
from devstack.servers import free_port
from devstack.services import ManagedProcess
from servicekit.asgi import web_concurrency

JSON = "application/json"


def create_app() -> FastAPI:
    """The floor app, on the books database of the environment (`BOOKS_DATABASE_URL`)."""
    settings = get_settings()
    pool = AsyncConnectionPool(
        settings.psycopg_database_url,
        min_size=settings.db_read_pool_size,
        max_size=settings.db_read_pool_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
    )
    encoder = msgspec.json.Encoder()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None)

    @app.get("/livez")
    async def livez() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/v1/books/{book_id}")
    async def get_book(book_id: int) -> Response:
        async with pool.connection() as conn:
            row = await (await conn.execute(BOOK_BY_ID, (book_id,))).fetchone()
        if row is None:
            return Response(status_code=404)
        return Response(encoder.encode(row), media_type=JSON)

    return app


@asynccontextmanager
async def floor_server(books_database_url: str) -> AsyncIterator[str]:
    """The floor app served on a free port by as many uvicorn processes as `make run`'s
    API runs (`WEB_CONCURRENCY`, else one per core); its base URL. Started and stopped in
    a thread: both wait on the process."""
    port = free_port()
    command: Sequence[str] = [
        *(sys.executable, "-m", "uvicorn", "--factory", f"{__name__}:create_app"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(floor_processes())),
        *("--no-access-log", "--log-level", "warning"),
    ]
    process = ManagedProcess(
        command=command,
        ready_url=f"http://127.0.0.1:{port}/livez",
        env={"BOOKS_DATABASE_URL": books_database_url},
        own_session=True,
    )
    await asyncio.to_thread(process.start)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await asyncio.to_thread(process.stop)


def floor_processes() -> int:
    return web_concurrency(os.environ)
