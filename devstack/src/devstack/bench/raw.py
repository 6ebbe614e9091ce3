"""The raw-driver baselines: the services' own SQL through a psycopg pool of the API's size,
driven by the same virtual users, clock and percentiles as the API rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from devstack.bench.load import REQUEST_TIMEOUT_S, Call, Load, Summary, scenario

Query = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
"""One request's statements on one pooled connection; raising counts as an error."""


class PoolSettings(Protocol):
    @property
    def db_pool_size(self) -> int: ...

    @property
    def db_max_overflow(self) -> int: ...


def api_pool_size(settings: PoolSettings) -> int:
    """The most connections the API's SQLAlchemy pool opens: the baseline gets as many."""
    return settings.db_pool_size + settings.db_max_overflow


@asynccontextmanager
async def raw_pool(url: str, size: int) -> AsyncIterator[AsyncConnectionPool]:
    """A pool of `size` connections, all open before the first request."""
    async with AsyncConnectionPool(
        url, min_size=size, max_size=size, open=False, timeout=REQUEST_TIMEOUT_S
    ) as pool:
        await pool.wait()
        yield pool


async def raw_scenario(name: str, query: Query, url: str, load: Load, pool_size: int) -> Summary:
    """`query` run by the same users through a psycopg pool the size of the API's."""
    async with raw_pool(url, pool_size) as pool:

        async def run_query(user: int) -> None:
            async with pool.connection() as conn:
                await query(conn)

        return await scenario(name, run_query, load)


@dataclass(frozen=True)
class Baseline:
    """Where the raw rows run: the service's database and its API's pool size."""

    url: str
    pool_size: int


async def api_and_raw(
    rows: list[Summary],
    load: Load,
    api: tuple[str, Call],
    raw: tuple[str, Query],
    baseline: Baseline,
) -> tuple[Summary, Summary]:
    """An API scenario, then its raw baseline at the same load; both appended to `rows`."""
    api_row = await scenario(*api, load)
    rows.append(api_row)
    raw_row = await raw_scenario(*raw, baseline.url, load, baseline.pool_size)
    rows.append(raw_row)
    return api_row, raw_row
