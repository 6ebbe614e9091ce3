"""Workers run against the real thing: Redis, and books and orders as uvicorn processes on
their own migrated databases, all sharing one service key."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from devstack import integrity
from devstack.mail import MailSink
from devstack.pytest_plugin import watch_process
from devstack.servers import free_port
from devstack.services import ServiceProcess
from orders import relay as orders_relay
from servicekit.api_keys import Role, bearer, new_token, register_key
from servicekit.relay import JobPolicy, OutboxRelay
from workers import clients
from workers.config import QUEUES, get_settings
from workers.worker import SimpleJobWorker

ROOT = Path(__file__).resolve().parents[2]
SERVICE_KEY = "workers-test-service-key-5d2a"
KEY_HEADER = {"X-Service-Key": SERVICE_KEY}
BOOKS_TABLES = "books, stock_reservations, stock_movements, copy_loans, outbox"
ORDERS_TABLES = "orders, order_items, outbox, idempotency_keys, members, borrows, holds, notices"
RELAY_POLICY = JobPolicy()


def books_env(database_url: str) -> dict[str, str]:
    return {"BOOKS_DATABASE_URL": database_url, "SERVICE_KEY": SERVICE_KEY}


@pytest.fixture(scope="session")
def books_service(books_database_url: str) -> Iterator[ServiceProcess]:
    with ServiceProcess("books.app:create_app", free_port(), books_env(books_database_url)) as s:
        yield s


@pytest.fixture(scope="session")
def orders_service(
    orders_database_url: str, books_service: ServiceProcess
) -> Iterator[ServiceProcess]:
    env = {
        "ORDERS_DATABASE_URL": orders_database_url,
        "ORDERS_BOOKS_URL": books_service.url,
        "SERVICE_KEY": SERVICE_KEY,
    }
    with ServiceProcess("orders.app:create_app", free_port(), env) as service:
        yield service


@pytest.fixture(scope="session")
def admin_key(books_database_url: str, orders_database_url: str) -> str:
    """An admin API key, accepted by both services (the tests write as the admin)."""
    token = new_token()
    register_key(
        [books_database_url, orders_database_url], token=token, role=Role.ADMIN, name="workers"
    )
    return token


def keyed_client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=10.0, headers=bearer(token))


@pytest.fixture(autouse=True)
def _empty_databases(books_database_url: str, orders_database_url: str) -> None:
    with psycopg.connect(books_database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {BOOKS_TABLES} RESTART IDENTITY CASCADE")
        conn.execute("UPDATE catalog_counters SET active_books = 0")
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {ORDERS_TABLES} RESTART IDENTITY CASCADE")
        conn.execute("UPDATE order_counts SET orders = 0")  # TRUNCATE fires no trigger


@pytest.fixture(autouse=True)
def _no_orphans(
    request: pytest.FixtureRequest, books_database_url: str, orders_database_url: str
) -> Iterator[None]:
    """After every test, books and orders agree on every settled order and loan
    (`make check-integrity`), unless the test says why it leaves them apart."""
    yield
    if request.node.get_closest_marker("orphans") is None:
        report = integrity.check(books_database_url, orders_database_url)
        assert report.clean, "\n".join(report.lines())


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    """The test's Redis database, empty at the start of every test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def worker_env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, books_service: ServiceProcess
) -> Iterator[dict[str, str]]:
    """The workers' settings pointing at the test services; also the env of worker processes.
    Orders is left out (an unused port) unless a test asks for `saga_env`."""
    env = {
        "REDIS_URL": redis_url,
        "SERVICE_KEY": SERVICE_KEY,
        "WORKERS_BOOKS_URL": books_service.url,
        "WORKERS_ORDERS_URL": f"http://127.0.0.1:{free_port()}",
        "WORKERS_METRICS_PORT": "0",
    }
    yield from _configured(monkeypatch, env)


@pytest.fixture
def saga_env(
    monkeypatch: pytest.MonkeyPatch, worker_env: dict[str, str], orders_service: ServiceProcess
) -> Iterator[dict[str, str]]:
    """`worker_env` with the real orders service."""
    yield from _configured(monkeypatch, worker_env | {"WORKERS_ORDERS_URL": orders_service.url})


@pytest.fixture
def books_down(worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`worker_env` with books unreachable: its jobs fail as they would while it restarts."""
    reconfigure(monkeypatch, worker_env | {"WORKERS_BOOKS_URL": f"http://127.0.0.1:{free_port()}"})


def reconfigure(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Set workers' environment variables; the next job reads the new settings."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    clients.close_clients()


def _configured(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Iterator[dict[str, str]]:
    reconfigure(monkeypatch, env)
    yield env
    clients.close_clients()
    get_settings.cache_clear()


def queue(connection: redis.Redis, name: str = "orders") -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue(
    connection: redis.Redis,
    function: str,
    payload: dict[str, Any],
    *,
    queue_name: str = "orders",
    job_id: str | None = None,
    request_id: str | None = "test-request-1",
    policy: JobPolicy = RELAY_POLICY,
) -> Job:
    """A job with the metadata and policy the outbox relay gives its jobs."""
    return queue(connection, queue_name).enqueue(
        function,
        payload,
        job_id=job_id,
        meta={"request_id": request_id},
        job_timeout=policy.timeout_s,
        retry=Retry(max=len(policy.retry_intervals_s), interval=list(policy.retry_intervals_s)),
        result_ttl=policy.result_ttl_s,
        failure_ttl=policy.failure_ttl_s,
    )


def relay_orders(orders_database_url: str, redis_url: str) -> int:
    """One round of the real outbox relay over orders' outbox; rows delivered."""
    with OutboxRelay(
        database_url=orders_database_url,
        redis_url=redis_url,
        routes=orders_relay.ROUTES,
        job_id_prefix="orders-outbox-",
    ) as relay:
        return relay.deliver_batch()


def work(connection: redis.Redis, *queue_names: str) -> bool:
    """Drain the queues with the workers' own worker class, as `make run` does minus fork."""
    worker = SimpleJobWorker(
        list(queue_names or QUEUES), connection=connection, serializer=JSONSerializer
    )
    return worker.work(burst=True)


def fetch(connection: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


def release_scheduled(connection: redis.Redis, name: str = "orders") -> list[str]:
    """Make every scheduled retry due now, instead of waiting out its interval."""
    registry = queue(connection, name).scheduled_job_registry
    job_ids: list[str] = registry.get_job_ids()
    for job_id in job_ids:
        registry.requeue(job_id)
    return job_ids


class Books:
    """The books service seen by a test: public catalog plus internal stock calls."""

    def __init__(self, service: ServiceProcess, token: str) -> None:
        self.http = keyed_client(service.url, token)

    def create_book(self, *, stock: int | None, **overrides: Any) -> dict[str, Any]:
        body = {
            "title": "The Great Gatsby",
            "author": "F. Scott Fitzgerald",
            "description": "A classic American novel set in the Jazz Age.",
            "price": "19.99",
            "stock": stock,
        } | overrides
        response = self.http.post("/v1/books", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def stock(self, book_id: int) -> int | None:
        response = self.http.get(f"/v1/books/{book_id}")
        assert response.status_code == 200, response.text
        return response.json()["stock"]  # type: ignore[no-any-return]

    def reserve(self, reference: str, *lines: tuple[int, int]) -> dict[str, Any]:
        body = {"reference": reference, "lines": [{"book_id": b, "quantity": q} for b, q in lines]}
        response = self.http.post("/internal/v1/stock/reservations", json=body, headers=KEY_HEADER)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


class Orders:
    """The public orders API, as a customer uses it."""

    def __init__(self, service: ServiceProcess, token: str) -> None:
        self.http = keyed_client(service.url, token)

    def place(
        self, *lines: tuple[int, int], request_id: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        body = {"items": [{"book_id": b, "quantity": q} for b, q in lines], **extra}
        headers = {"X-Request-ID": request_id} if request_id else {}
        response = self.http.post("/v1/orders", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def get(self, order_id: int) -> dict[str, Any]:
        response = self.http.get(f"/v1/orders/{order_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def cancel(self, order_id: int) -> dict[str, Any]:
        response = self.http.post(f"/v1/orders/{order_id}/cancel")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def orders(orders_service: ServiceProcess, admin_key: str) -> Iterator[Orders]:
    client = Orders(orders_service, admin_key)
    yield client
    client.http.close()


@pytest.fixture
def books(books_service: ServiceProcess, admin_key: str) -> Iterator[Books]:
    client = Books(books_service, admin_key)
    yield client
    client.http.close()


def movements(books_database_url: str, reference: str) -> list[tuple[str, int, int]]:
    """The stock ledger of a reference: (kind, book_id, quantity) rows."""
    with psycopg.connect(books_database_url) as conn:
        rows = conn.execute(
            "SELECT kind, book_id, quantity FROM stock_movements WHERE reference = %s ORDER BY id",
            [reference],
        ).fetchall()
    return [(str(kind), int(book_id), int(quantity)) for kind, book_id, quantity in rows]


class WorkerProcess:
    """`python -m workers.worker` as `make run` starts it, in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        watch_process("workers.worker", env, log_path)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.worker"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def kill_all(self) -> None:
        """SIGKILL the pool, its workers and their scheduler: a machine or container dying."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        # Also when the pool itself is gone: what it forked may have outlived it.
        self.kill_all()
        self._log.close()


@pytest.fixture
def start_worker(
    saga_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a worker process with the test settings (books and orders) plus
    `overrides`."""
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        metrics_dir = tmp_path / f"metrics-{len(started)}"
        metrics_dir.mkdir()
        env = saga_env | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)} | overrides
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process alive (a zombie waits for its
    reaper and holds nothing)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone while we looked
            continue
        if fields[0] != "Z":
            yield int(stat.parent.name), int(fields[1]), int(fields[2])


def live_group(pgid: int) -> set[int]:
    """Pids of the process group that are alive."""
    return {pid for pid, _, group in live_processes() if group == pgid}


def live_children(parent: int) -> set[int]:
    return {pid for pid, ppid, _ in live_processes() if ppid == parent}


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@dataclass(frozen=True)
class Cancelled:
    """A cancelled order of 2 copies of a book with 5 in stock, reserved before it was
    cancelled; the job that releases them has not run."""

    book_id: int
    order_id: int

    @property
    def payload(self) -> dict[str, int]:
        return {"order_id": self.order_id}

    @property
    def reference(self) -> str:
        return f"order:{self.order_id}"


@pytest.fixture
def cancelled(saga_env: dict[str, str], books: Books, orders: Orders) -> Cancelled:
    book = books.create_book(stock=5)
    order = orders.place((book["id"], 2))
    assert books.reserve(f"order:{order['id']}", (book["id"], 2))["status"] == "reserved"
    orders.cancel(order["id"])
    return Cancelled(book_id=int(book["id"]), order_id=int(order["id"]))


def releasing(orders_database_url: str, order_id: int) -> bool:
    """Orders still waits for a worker to report the order's stock given back."""
    with psycopg.connect(orders_database_url) as conn:
        row = conn.execute(
            "SELECT releasing_since IS NOT NULL FROM orders WHERE id = %s", [order_id]
        ).fetchone()
    assert row is not None
    return bool(row[0])


class Library:
    """The lending API of orders, as a librarian's desk uses it."""

    def __init__(self, service: ServiceProcess, token: str) -> None:
        self.http = keyed_client(service.url, token)
        self.members = 0

    def member(self, **overrides: Any) -> dict[str, Any]:
        self.members += 1
        body = {"name": f"Reader {self.members}", "email": f"r{self.members}@example.org"}
        return self._created(self.http.post("/v1/members", json=body | overrides))

    def borrow(self, member: dict[str, Any], book: dict[str, Any]) -> dict[str, Any]:
        body = {"member_id": member["id"], "book_id": book["id"]}
        return self._created(self.http.post("/v1/borrows", json=body))

    def hold(self, member: dict[str, Any], book: dict[str, Any]) -> dict[str, Any]:
        body = {"member_id": member["id"], "book_id": book["id"]}
        return self._created(self.http.post("/v1/holds", json=body))

    def get(self, path: str) -> dict[str, Any]:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def post(self, path: str) -> dict[str, Any]:
        response = self.http.post(path)
        assert response.status_code in (200, 201), response.text
        return response.json()  # type: ignore[no-any-return]

    def sweep(self) -> dict[str, Any]:
        response = self.http.post("/internal/v1/library/sweep", headers=KEY_HEADER)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    @staticmethod
    def _created(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def library(orders_service: ServiceProcess, admin_key: str) -> Iterator[Library]:
    client = Library(orders_service, admin_key)
    yield client
    client.http.close()


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch, saga_env: dict[str, str]) -> Iterator[MailSink]:
    """A real SMTP server the notice jobs mail to."""
    folder = Path(tempfile.mkdtemp(prefix="bookstore-test-mail-"))
    with MailSink(folder, free_port()) as sink:
        reconfigure(monkeypatch, {"SMTP_URL": sink.url})
        yield sink
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def settle(connection: redis.Redis, redis_url: str, orders_database_url: str):  # type: ignore[no-untyped-def]
    """Deliver orders' outbox and run the jobs, until nothing is left to do."""

    def run() -> None:
        while relay_orders(orders_database_url, redis_url):
            work(connection, "borrows", "notifications")

    return run
