"""The engine, the read pool and `after_commit` against real PostgreSQL: timeouts, hidden
parameters, reads that outlive a restart, and callbacks that run once the transaction
commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from devstack.pytest_plugin import create_database, drop_database
from servicekit.database import (
    ReadPool,
    after_commit,
    create_engine,
    create_sessionmaker,
    session_rows,
)


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


class TestSessionRows:
    async def test_runs_in_the_sessions_transaction(self, sessionmaker) -> None:  # type: ignore[no-untyped-def]
        """What it writes commits or rolls back with the session, like the session's own
        statements, and it sees what they wrote."""
        async with sessionmaker() as session:
            async with session.begin():
                await session.execute(text("INSERT INTO things VALUES (4)"))
                rows = await session_rows(
                    session, "INSERT INTO things VALUES (%(id)s) RETURNING id", {"id": 5}
                )
                assert rows == [{"id": 5}]
                assert await session_rows(session, "SELECT count(*) AS n FROM things", ()) == [
                    {"n": 2}
                ]
                await session.rollback()
            async with session.begin():
                await session_rows(session, "INSERT INTO things VALUES (%s) RETURNING id", (6,))
            found = await session.scalars(text("SELECT id FROM things ORDER BY id"))
            assert list(found) == [6]

    async def test_counts_after_the_commit_only(self, sessionmaker) -> None:  # type: ignore[no-untyped-def]
        ran: list[str] = []

        async def insert_twice(session: AsyncSession) -> None:
            async with session.begin():
                after_commit(session, lambda: ran.append("counted"))
                await session_rows(session, "INSERT INTO things VALUES (7), (7) RETURNING id", ())

        async with sessionmaker() as session:
            with pytest.raises(psycopg.errors.UniqueViolation):
                await insert_twice(session)
            assert ran == []
            async with session.begin():
                after_commit(session, lambda: ran.append("counted"))
                await session_rows(session, "INSERT INTO things VALUES (7) RETURNING id", ())
        assert ran == ["counted"]


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


def read_pool_of(url: str, *, statement_s: float = 10) -> ReadPool:
    return ReadPool(
        url,
        size=2,
        timeout_s=5,
        statement_timeout_s=statement_s,
        idle_in_transaction_timeout_s=30,
        name="test-reads",
    )


async def backend_pid(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def pooled_backend(pool: ReadPool) -> int:
    """The backend of the pool's connection, once reads use one (two in a row on the same
    backend): the first reads, before the pool has connected, connect alone."""
    previous = await pool.run(backend_pid)
    for _ in range(100):
        current = await pool.run(backend_pid)
        if current == previous:
            return current
        previous = current
        await asyncio.sleep(0.05)
    raise AssertionError("the reads never used a pooled connection")


class TestReadPool:
    async def test_a_missing_database_fails_the_read_at_once(self, database_url: str) -> None:
        """Not after the pool's wait for a connection (PoolTimeout, 30 s here): callers
        get their 503 while the database is away."""
        pool = ReadPool(
            database_url.rpartition("/")[0] + "/no_such_database",
            size=2,
            timeout_s=30,
            statement_timeout_s=10,
            idle_in_transaction_timeout_s=30,
            name="test-missing",
        )
        try:
            for _ in range(3):
                with pytest.raises(psycopg.OperationalError) as raised:
                    await pool.run(backend_pid)
                assert not isinstance(raised.value, PoolTimeout)
                assert "no_such_database" in str(raised.value)
        finally:
            await pool.close()

    async def test_reads_in_autocommit_without_a_transaction(self, database_url: str) -> None:
        pool = read_pool_of(database_url)

        async def status(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
            cursor = await conn.execute("SELECT now() = statement_timestamp()")
            return await cursor.fetchone()

        try:
            # Inside a transaction now() is its start; in autocommit, this statement's.
            assert await pool.run(status) == (True,)
        finally:
            await pool.close()

    async def test_a_read_survives_a_database_restart(self, database_url: str) -> None:
        """Its connection killed under it (as a restart does), a read runs again on a new
        one instead of failing: what the engine's pre-ping spares its sessions."""
        pool = read_pool_of(database_url)
        try:
            first = await pooled_backend(pool)
            async with await psycopg.AsyncConnection.connect(
                database_url, autocommit=True
            ) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            second = await pool.run(backend_pid)
            assert second != first
        finally:
            await pool.close()

    async def test_a_read_left_inside_a_transaction_passes_none_on(self, database_url: str) -> None:
        """A read that opened a transaction and gave its connection back: the next read on
        that connection is in autocommit again, and what the transaction did is undone."""
        pool = ReadPool(
            database_url,
            size=1,
            timeout_s=5,
            statement_timeout_s=10,
            idle_in_transaction_timeout_s=30,
            name="test-one-connection",
        )

        async def left_open(conn: psycopg.AsyncConnection[Any]) -> int:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMPORARY TABLE left_open (id int)")
            return await backend_pid(conn)

        async def after(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
            cursor = await conn.execute(
                "SELECT pg_backend_pid(), now() = statement_timestamp(),"
                " to_regclass('pg_temp.left_open') IS NULL"
            )
            return await cursor.fetchone()

        try:
            backend = await pooled_backend(pool)
            assert await pool.run(left_open) == backend
            assert await pool.run(after) == (backend, True, True)
        finally:
            await pool.close()

    async def test_a_failing_statement_is_not_run_again(self, database_url: str) -> None:
        pool = read_pool_of(database_url, statement_s=0.2)
        runs = 0

        async def slow(conn: psycopg.AsyncConnection[Any]) -> None:
            nonlocal runs
            runs += 1
            await conn.execute("SELECT pg_sleep(1)")

        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                await pool.run(slow)
            assert runs == 1
        finally:
            await pool.close()
