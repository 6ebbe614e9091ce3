"""Database URLs and engines, made the same way in every service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import sql
from psycopg.errors import ForeignKeyViolation
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

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
    url: str,
    *,
    pool_size: int,
    max_overflow: int,
    pool_timeout_s: float,
    statement_timeout_s: float,
    idle_in_transaction_timeout_s: float,
) -> AsyncEngine:
    """The service's engine. Every session of it has PostgreSQL cancel a statement that
    runs longer than `statement_timeout_s` and end a session left idle inside a
    transaction longer than `idle_in_transaction_timeout_s`: a slow query or a stuck
    request cannot hold a pooled connection (and its locks) for ever. Errors never carry
    the statement's parameters (they are customers' data)."""
    options = _session_options(statement_timeout_s, idle_in_transaction_timeout_s)
    # Pre-ping costs a round trip per checkout and spares clients a 503 on every pooled
    # connection after a database restart.
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={"options": options},
    )


def _session_options(statement_timeout_s: float, idle_in_transaction_timeout_s: float) -> str:
    return (
        f"-c statement_timeout={round(statement_timeout_s * 1000)} "
        f"-c idle_in_transaction_session_timeout={round(idle_in_transaction_timeout_s * 1000)}"
    )


T = TypeVar("T")
Row = dict[str, Any]
Statement = str | sql.SQL | sql.Composed


class ReadPool:
    """psycopg connections in autocommit for the hot reads, beside the engine's pool.

    A read through the engine pays a round trip for the pool's pre-ping, one each for
    BEGIN and COMMIT, and SQLAlchemy's and the ORM's Python work around its one statement;
    here the statement is the only round trip (prepared on each connection after a few
    uses, psycopg's default), and the rows come back as plain dicts. What pre-ping did
    is done after the fact: a read that finds its connection broken (the database
    restarted since it was pooled) has the pool check every idle connection and runs
    once more. Opened on first use (an app that never reads opens no connection);
    `close()` when the app stops. The sessions get the engine's statement timeouts.

    While the pool holds no working connection (before its first, or after the database
    went away) a read connects for itself: psycopg's pool would make it wait `timeout_s`
    while it reconnects in the background, but a database that is down must cost the
    caller a fast 503, as the engine's pool gives, not a stall.

    Besides reads, it runs the single statements that write and must commit at once, on
    their own (orders' idempotency claim). A statement run once more after a broken
    connection may find its own first run committed: such a statement must do no harm
    twice (the claim then finds its key held and answers 409, as for any request racing
    the first).
    """

    def __init__(
        self,
        url: str,
        *,
        size: int,
        timeout_s: float,
        statement_timeout_s: float,
        idle_in_transaction_timeout_s: float,
        name: str,
    ) -> None:
        options = _session_options(statement_timeout_s, idle_in_transaction_timeout_s)
        self._conninfo = libpq_url(url)
        self._kwargs: dict[str, Any] = {"autocommit": True, "options": options}
        self._pool: AsyncConnectionPool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=size,
            timeout=timeout_s,
            kwargs=self._kwargs,
            configure=self._connected,
            name=name,
            open=False,
        )
        self._opened = False
        self._opening = asyncio.Lock()
        # Whether the pool has a connection that worked: until then reads connect alone.
        self._pooled = False

    async def run(self, read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`read` on a pooled connection; again on another one if that one was broken."""
        return await self._run(read, retry=True)

    async def _run(
        self, read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], *, retry: bool
    ) -> T:
        if not self._opened:
            await self._open()
        if not self._pooled:
            return await self._run_alone(read)
        # `getconn`/`putconn`, not the pool's `connection()`: that one also enters the
        # connection's own context, whose exit awaits a COMMIT with nothing to do in
        # autocommit (about 2% of the CPU of a GET of an order, by py-spy); `putconn`
        # rolls back a connection given back inside a transaction all the same.
        conn = await self._pool.getconn()
        try:
            return await read(conn)
        except psycopg.OperationalError:
            if not conn.broken or not retry:
                raise
        finally:
            await self._pool.putconn(conn)
        # The pool discarded it; the database restarted, so the other idle ones are stale too.
        await self._pool.check()
        self._pooled = self._pool.get_stats()["pool_available"] > 0
        return await self._run(read, retry=False)

    async def rows(self, statement: Statement, params: Sequence[object] = ()) -> list[Row]:
        """The rows of one statement, as dicts."""

        return await self.run(lambda conn: fetch_rows(conn, statement, params))

    async def page(
        self, page: tuple[Statement, Sequence[object]], count: tuple[Statement, Sequence[object]]
    ) -> tuple[list[Row], int]:
        """The rows of a `page` statement that carries the total of its query as a `total`
        column on every row, and that total: one statement. Only a page past the end, which
        has no row to carry the total, costs the `count` statement too."""

        async def read(conn: psycopg.AsyncConnection[Any]) -> tuple[list[Row], int]:
            rows = await fetch_rows(conn, *page)
            if rows:
                return rows, int(rows[0]["total"] or 0)
            counted = await (await conn.execute(*count)).fetchone()
            return [], int(counted[0] or 0) if counted else 0

        return await self.run(read)

    async def _run_alone(self, read: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`read` on a connection of its own, which fails at once while the database is
        down (the pool reconnects in the background meanwhile)."""
        async with await psycopg.AsyncConnection.connect(self._conninfo, **self._kwargs) as conn:
            return await read(conn)

    async def _connected(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The pool made a connection: reads use the pool (again)."""
        self._pooled = True

    async def _open(self) -> None:
        async with self._opening:
            if not self._opened:
                await self._pool.open(wait=False)
                self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False


class ReadPoolSettings(Protocol):
    """The settings every service has for its read pool (read-only, as frozen settings are)."""

    @property
    def database_url(self) -> str: ...
    @property
    def db_read_pool_size(self) -> int: ...
    @property
    def db_pool_timeout_s(self) -> float: ...
    @property
    def db_statement_timeout_s(self) -> float: ...
    @property
    def db_idle_in_transaction_timeout_s(self) -> float: ...


def create_read_pool(settings: ReadPoolSettings, *, service: str) -> ReadPool:
    """A service's read pool, with its engine's timeouts."""
    return ReadPool(
        settings.database_url,
        size=settings.db_read_pool_size,
        timeout_s=settings.db_pool_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        idle_in_transaction_timeout_s=settings.db_idle_in_transaction_timeout_s,
        name=f"{service}-reads",
    )


async def database_answers(engine: AsyncEngine, *, timeout_s: float) -> bool:
    """Whether the database runs `SELECT 1` within `timeout_s` (for health probes, which
    must answer even while the database hangs)."""
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def session_rows(
    session: AsyncSession, statement: Statement, params: Sequence[object] | Mapping[str, object]
) -> list[Row]:
    """The rows of one statement, as dicts, run by psycopg itself on the session's
    connection and in its transaction: for the hot writes, whose SQLAlchemy work per
    statement cost more than the statement. The session still commits or rolls back, and
    its `after_commit` callbacks run as for any other statement."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    return await fetch_rows(driver, statement, params)


async def fetch_rows(
    conn: psycopg.AsyncConnection[Any],
    statement: Statement,
    params: Sequence[object] | Mapping[str, object] = (),
) -> list[Row]:
    """The rows of one statement on `conn`, as dicts; the cursor closed after."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(statement, params)
        return await cursor.fetchall()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


_AFTER_COMMIT = "servicekit.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], object]) -> None:
    """Run `callback` when the session's transaction commits, and never if it rolls back.

    For counters of what was written (orders placed, revenue, stock reserved): counted
    before the commit, a write whose commit failed would count, and so would the retry
    that then succeeds. SQLAlchemy has the events but no such hook, hence these lines.
    """
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the transaction may still roll back
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        callback()


@event.listens_for(Session, "after_transaction_end")
def _forget_after_rollback(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)


@asynccontextmanager
async def rolled_back(session: AsyncSession) -> AsyncIterator[None]:
    """Run the block in a savepoint that is always rolled back, as a dry run: whatever it
    writes (rows, outbox events) is undone, and what it meant to do after the commit
    (`after_commit`) is dropped. Read what the answer needs inside the block: the rows it
    touched are expired after the rollback."""
    callbacks: list[Callable[[], object]] = session.sync_session.info.setdefault(_AFTER_COMMIT, [])
    kept = len(callbacks)
    savepoint = await session.begin_nested()
    try:
        yield
    finally:
        await savepoint.rollback()
        del callbacks[kept:]


def violates_foreign_key(exc: IntegrityError, constraint: str) -> bool:
    """Whether the statement failed on the foreign key `constraint` (a row it names is gone)."""
    orig = exc.orig
    return isinstance(orig, ForeignKeyViolation) and orig.diag.constraint_name == constraint
