"""Session-wide test servers (PostgreSQL and Redis), and the watch for secrets in logs.

`TEST_DATABASE_URL` (a server where the tests may create databases) and
`TEST_REDIS_URL` (a Redis database the tests may flush) are used when set;
otherwise embedded servers start once per test session on free ports.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from hypothesis import settings as hypothesis_settings
from psycopg import sql

from devstack.secret_watch import SecretWatch
from devstack.servers import EmbeddedPostgres, EmbeddedValkey, free_port
from devstack.services import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[3]

# Property tests explore the same examples on every run (CI must not turn red by chance),
# and a loaded machine must not fail them on time.
hypothesis_settings.register_profile("bookstore", derandomize=True, deadline=None)
hypothesis_settings.load_profile("bookstore")


# The session's watch, for processes a suite starts its own way (`watch_process`).
WATCHES: list[SecretWatch] = []


def watch_process(where: str, env: Mapping[str, str], log_path: Path) -> None:
    """Have the session's secret watch read what a process started by a test prints."""
    for watch in WATCHES:
        watch.follow(where, env, log_path)


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_logs() -> Iterator[None]:
    """Every log line of the session, the test process's and its services', is searched
    for the keys and passwords the session handed out (`devstack.secret_watch`)."""
    watch = SecretWatch()
    watch.learn(os.environ)
    start = ManagedProcess.start

    def start_watched(process: ManagedProcess) -> None:
        start(process)
        assert process.log_path is not None
        watch.follow(" ".join(process.command[-3:]), process.env, process.log_path)

    WATCHES.append(watch)
    logging.getLogger().addHandler(watch)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ManagedProcess, "start", start_watched)
            yield
    finally:
        logging.getLogger().removeHandler(watch)
        WATCHES.remove(watch)
    watch.learn(os.environ)
    leaks = watch.leaks()
    assert not leaks, f"{len(leaks)} log lines hold a key or password:\n" + "\n".join(leaks[:20])


@contextmanager
def _server_folder(name: str) -> Iterator[Path]:
    """A folder outside pytest's temp tree, which a concurrent pytest session may prune
    while this session's server still writes there."""
    folder = Path(tempfile.mkdtemp(prefix=f"bookstore-test-{name}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """Admin URL of a PostgreSQL server the tests may create databases on."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    with _server_folder("pg") as folder, EmbeddedPostgres(folder / "data", free_port()) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis database the tests own (flushed by the tests that use it)."""
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    with (
        _server_folder("valkey") as folder,
        EmbeddedValkey(folder, free_port(), persist=False) as server,
    ):
        yield server.url


@pytest.fixture(scope="session", autouse=True)
def _rate_limits_in_test_redis(redis_url: str) -> None:
    """The services a test starts (in-process or as processes, which inherit the
    environment) count their rate limits in the tests' own Redis database, not in
    whatever Redis the default URL names (their queues stay where each test puts them)."""
    for service in ("BOOKS", "ORDERS"):
        os.environ[f"{service}_RATE_LIMIT_REDIS_URL"] = redis_url


def with_database(server_url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    base, _, query = server_url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{database}" + (f"?{query}" if query else "")


def create_database(server_url: str, prefix: str) -> str:
    """Create a fresh, uniquely named database and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    name = database_url.partition("?")[0].rpartition("/")[2]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def alembic_config(service: str, database_url: str) -> Config:
    """The service's own Alembic configuration, aimed at `database_url`."""
    config = Config(str(REPO_ROOT / service / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def migrated_database(server_url: str, service: str) -> str:
    """A fresh database migrated with the service's production migrations (never create_all)."""
    url = create_database(server_url, f"{service}_test")
    command.upgrade(alembic_config(service, url), "head")
    return url


@pytest.fixture(scope="session")
def books_database_url(postgres_server_url: str) -> Iterator[str]:
    """A books database, migrated once per session."""
    url = migrated_database(postgres_server_url, "books")
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture(scope="session")
def orders_database_url(postgres_server_url: str) -> Iterator[str]:
    """An orders database, migrated once per session."""
    url = migrated_database(postgres_server_url, "orders")
    yield url
    drop_database(postgres_server_url, url)
