"""The options of a run and what every section checks of the stack before loading it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import Composed

from books.seed import describe
from devstack.bench.load import Load
from devstack.bench.report import first_line
from devstack.run import StackConfig, dev_key_file
from servicekit.api_keys import Role, bearer

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
ID_SAMPLE_SIZE = 10_000


@dataclass
class Options:
    load: Load
    books_url: str
    books_database_url: str
    min_books: int
    seed: bool
    random_seed: int | None
    # The offset of the deep-page rows (and the depth of the cursor row).
    deep_offset: int = 50_000
    orders_url: str = "http://127.0.0.1:8082"
    orders_database_url: str = "postgresql://postgres@127.0.0.1:5433/orders_db"
    redis_url: str = "redis://127.0.0.1:6380/0"
    service_key: str | None = None
    # An admin API key: the writes (books, orders, borrows) and the orders reads need one.
    api_key: str | None = None
    worker_jobs: int = 1000
    saga_rate: float = 20.0
    saga_duration_s: float = 10.0

    lending_rate: float = 20.0
    lending_duration_s: float = 10.0
    web_url: str = "http://127.0.0.1:8000"
    web_concurrency: int = 8


class SkipSection(Exception):
    """The section cannot run; the message says why and what to do."""


def is_loopback_url(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK_HOSTS


def is_loopback_database(url: str) -> bool:
    host = str(conninfo_to_dict(url).get("host", "localhost"))
    return host.startswith("/") or host in LOOPBACK_HOSTS


async def service_is_up(base_url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=3) as client:
            response = await client.get("/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def require_service(name: str, base_url: str) -> None:
    if not await service_is_up(base_url):
        raise SkipSection(f"no {name} service at {base_url} (start it with `make run`)")


async def require_orders_database(url: str) -> None:
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
            await conn.execute("SELECT 1 FROM orders LIMIT 1")
    except psycopg.Error as error:
        where = describe(url)
        raise SkipSection(
            f"cannot query the orders database at {where}: {first_line(error)}"
        ) from error


def redis_database(url: str, db: int) -> str:
    """The same Redis server, another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def require_redis(url: str) -> None:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as client:
            client.ping()
    except redis.RedisError as error:
        raise SkipSection(
            f"no Redis at {url} (start it with `make run`): {first_line(error)}"
        ) from error


async def service_key(options: Options) -> str:
    """SERVICE_KEY, else the key `make run` generated for the stack, checked at books with
    a release of `bench:key-check`, a reference no order has (books fences it: one row)."""
    path = StackConfig.from_env().data_dir / "service_key"
    key = options.service_key or (path.read_text().strip() if path.exists() else "")
    if not key:
        raise SkipSection(f"no SERVICE_KEY and no {path} (start the stack with `make run`)")
    await require_service("books", options.books_url)
    async with httpx.AsyncClient(base_url=options.books_url, timeout=5) as client:
        response = await client.post(
            "/internal/v1/stock/releases",
            json={"reference": "bench:key-check"},
            headers={"X-Service-Key": key},
        )
    if response.status_code != 200:
        raise SkipSection(f"books answered HTTP {response.status_code} to the service key")
    return key


def admin_key_of_stack() -> str | None:
    """BOOKSTORE_ADMIN_KEY, else the development admin key `make run` made."""
    path = StackConfig.from_env().data_dir / dev_key_file(Role.ADMIN)
    key = os.environ.get("BOOKSTORE_ADMIN_KEY", "").strip()
    return key or (path.read_text().strip() if path.exists() else None)


def key_headers(options: Options) -> dict[str, str]:
    """The `Authorization` header of the admin key, or why the section cannot run."""
    if not options.api_key:
        raise SkipSection(
            "no BOOKSTORE_ADMIN_KEY and no development key (start the stack with `make run`)"
        )
    return bearer(options.api_key)


async def fetch_all(
    url: str, sql: str | Composed, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """The rows of one statement, on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def fetch_value(url: str, sql: str | Composed, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of one statement; None without rows."""
    rows = await fetch_all(url, sql, params)
    return rows[0][0] if rows else None
