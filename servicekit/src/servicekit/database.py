"""Database URLs and engines, made the same way in every service."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_SQLALCHEMY_SCHEME = "postgresql+psycopg://"


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL (psycopg 3 driver) for a `postgresql://` URL."""
    for prefix in (_SQLALCHEMY_SCHEME, "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return _SQLALCHEMY_SCHEME + url.removeprefix(prefix)
    raise ValueError("database URL must start with postgresql://")


def libpq_url(url: str) -> str:
    """The plain `postgresql://` URL that psycopg and libpq tools take."""
    return "postgresql://" + sqlalchemy_url(url).removeprefix(_SQLALCHEMY_SCHEME)


def create_engine(
    url: str, *, pool_size: int, max_overflow: int, pool_timeout_s: float
) -> AsyncEngine:
    # Pre-ping costs a round trip per checkout and spares clients a 503 on every pooled
    # connection after a database restart.
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
