"""Database engine and the request-scoped session: the only place that commits.

Dependencies in this service are `async def` even when they await nothing: FastAPI runs a
plain `def` dependency in its thread pool, a thread hop on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

from books.config import Settings
from servicekit import database


class Base(DeclarativeBase):
    pass


def create_engine(settings: Settings) -> AsyncEngine:
    return database.create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout_s=settings.db_pool_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        idle_in_transaction_timeout_s=settings.db_idle_in_transaction_timeout_s,
    )


async def close_databases(app: FastAPI) -> None:
    """Close the app's connections: the engine's pool and the read pool."""
    await app.state.engine.dispose()
    await app.state.reads.close()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        yield session


# "function" scope: commit before the response leaves, so a 201 means the row is durable
# and a failed commit still reaches the error handlers.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
