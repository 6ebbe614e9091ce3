"""`after_commit` against real PostgreSQL: callbacks run once the transaction commits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.pytest_plugin import create_database, drop_database
from servicekit.database import after_commit, create_engine, create_sessionmaker


@pytest.fixture(scope="module")
def database_url(postgres_server_url: str) -> Iterator[str]:
    url = create_database(postgres_server_url, "servicekit_db_test")
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2, max_overflow=0, pool_timeout_s=5)
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
