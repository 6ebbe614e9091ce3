"""The engine and `after_commit` against real PostgreSQL: timeouts, hidden parameters, and
callbacks that run once the transaction commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from devstack.pytest_plugin import create_database, drop_database
from servicekit.database import after_commit, create_engine, create_sessionmaker


@pytest.fixture(scope="module")
def database_url(postgres_server_url: str) -> Iterator[str]:
    url = create_database(postgres_server_url, "servicekit_db_test")
    yield url
    drop_database(postgres_server_url, url)


def engine_of(url: str, *, statement_s: float = 10, idle_s: float = 30) -> AsyncEngine:
    return create_engine(
        url,
        pool_size=2,
        max_overflow=0,
        pool_timeout_s=5,
        statement_timeout_s=statement_s,
        idle_in_transaction_timeout_s=idle_s,
    )


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = engine_of(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS things (id int PRIMARY KEY)"))
        await conn.execute(text("TRUNCATE things"))
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_runs_once_the_transaction_commits(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    ran: list[str] = []
    async with sessionmaker() as session:
        async with session.begin():
            await session.execute(text("INSERT INTO things VALUES (1)"))
            after_commit(session, lambda: ran.append("counted"))
            assert ran == []
        assert ran == ["counted"]
        # The next transaction of the same session starts with no callbacks.
        async with session.begin():
            await session.execute(text("SELECT 1"))
    assert ran == ["counted"]


async def test_never_runs_when_the_transaction_rolls_back(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    ran: list[str] = []

    async def insert_twice(session: AsyncSession) -> None:
        async with session.begin():
            after_commit(session, lambda: ran.append("counted"))
            await session.execute(text("INSERT INTO things VALUES (2), (2)"))

    async with sessionmaker() as session:
        with pytest.raises(IntegrityError):
            await insert_twice(session)
        async with session.begin():
            await session.execute(text("INSERT INTO things VALUES (2)"))
    assert ran == []


async def test_waits_past_a_released_savepoint_for_the_real_commit(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    ran: list[str] = []
    async with sessionmaker() as session, session.begin():
        async with session.begin_nested():
            await session.execute(text("INSERT INTO things VALUES (3)"))
            after_commit(session, lambda: ran.append("counted"))
        assert ran == []
        await session.rollback()
    assert ran == []


class TestEngine:
    async def test_a_statement_past_its_timeout_is_cancelled(self, database_url: str) -> None:
        engine = engine_of(database_url, statement_s=0.2)
        try:
            async with engine.connect() as conn:
                with pytest.raises(DBAPIError, match="statement timeout"):
                    await conn.execute(text("SELECT pg_sleep(2)"))
        finally:
            await engine.dispose()

    async def test_a_transaction_left_idle_loses_its_session(self, database_url: str) -> None:
        engine = engine_of(database_url, idle_s=0.2)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))  # begins the transaction
                await asyncio.sleep(0.6)
                with pytest.raises(DBAPIError, match=r"idle-in-transaction|closed"):
                    await conn.execute(text("SELECT 1"))
            async with engine.connect() as conn:  # the pool hands out a live connection
                assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        finally:
            await engine.dispose()

    async def test_errors_do_not_carry_the_parameters(self, sessionmaker) -> None:  # type: ignore[no-untyped-def]
        """SQLAlchemy no longer appends the bound values (PostgreSQL's own detail line of a
        unique violation still names the key, which is not ours to rewrite)."""
        async with sessionmaker() as session:
            with pytest.raises(IntegrityError) as raised:
                async with session.begin():
                    await session.execute(
                        text("INSERT INTO things VALUES (:id), (:id)"), {"id": 424242}
                    )
        assert "{'id': 424242}" not in str(raised.value)
        assert "SQL parameters hidden" in str(raised.value)
