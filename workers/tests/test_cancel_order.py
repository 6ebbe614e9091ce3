"""`workers.stock.cancel_order` against the real books and orders services: release, the
report to orders, retries, failures."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from asgi_correlation_id import CorrelationIdFilter
from rq.job import JobStatus

from devstack.servers import free_port
from devstack.services import ServiceProcess
from tests.conftest import (
    Books,
    Cancelled,
    Orders,
    books_env,
    enqueue,
    fetch,
    movements,
    queue,
    reconfigure,
    release_scheduled,
    releasing,
    work,
)
from workers import failed

CANCEL = "workers.stock.cancel_order"


class TestCancelOrder:
    def test_releases_what_the_order_reserved(
        self,
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
        books_database_url: str,
        orders_database_url: str,
    ) -> None:
        assert releasing(orders_database_url, cancelled.order_id)
        job = enqueue(connection, CANCEL, cancelled.payload)

        assert work(connection, "orders")

        job = fetch(connection, job.id)
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value() == "released"
        assert books.stock(cancelled.book_id) == 5
        assert movements(books_database_url, cancelled.reference) == [
            ("reserve", cancelled.book_id, 2),
            ("release", cancelled.book_id, 2),
        ]
        assert not releasing(orders_database_url, cancelled.order_id)

    def test_the_same_cancellation_twice_releases_once(
        self,
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
        books_database_url: str,
    ) -> None:
        first = enqueue(connection, CANCEL, cancelled.payload, job_id="orders-outbox-7")
        work(connection, "orders")
        # The relay never enqueues an existing job id; a second delivery of the same event
        # (another outbox row, a requeue) is a new job with the same payload.
        second = enqueue(connection, CANCEL, cancelled.payload, job_id="orders-outbox-8")
        work(connection, "orders")

        assert fetch(connection, first.id).return_value() == "released"
        assert fetch(connection, second.id).return_value() == "released"
        assert books.stock(cancelled.book_id) == 5
        assert [kind for kind, _, _ in movements(books_database_url, cancelled.reference)] == [
            "reserve",
            "release",
        ]

    def test_an_order_that_reserved_nothing_has_nothing_to_release(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        books: Books,
        orders: Orders,
        orders_database_url: str,
    ) -> None:
        book = books.create_book(stock=5)
        order = orders.place((book["id"], 2))
        orders.cancel(order["id"])
        job = enqueue(connection, CANCEL, {"order_id": order["id"]})

        work(connection, "orders")

        assert fetch(connection, job.id).return_value() == "not_reserved"
        assert books.stock(book["id"]) == 5
        assert not releasing(orders_database_url, order["id"])

    def test_an_order_orders_does_not_know_fails_without_retries(
        self, saga_env: dict[str, str], connection: redis.Redis
    ) -> None:
        job = enqueue(connection, CANCEL, {"order_id": 987_654})

        work(connection, "orders")

        job = fetch(connection, job.id)
        assert job.get_status() == JobStatus.FAILED
        result = job.latest_result()
        assert result is not None
        assert "refused the request with 404" in (result.exc_string or "")


class TestPermanentFailures:
    def test_a_malformed_payload_fails_at_once_without_retries(
        self, worker_env: dict[str, str], connection: redis.Redis
    ) -> None:
        job = enqueue(connection, CANCEL, {"order": 1})

        work(connection, "orders")

        job = fetch(connection, job.id)
        assert job.get_status() == JobStatus.FAILED
        assert job.id in queue(connection).failed_job_registry
        assert queue(connection).scheduled_job_registry.count == 0

    @pytest.mark.orphans("a refused release leaves the cancelled order's stock reserved")
    def test_a_refused_service_key_fails_at_once_without_retries(
        self,
        monkeypatch: pytest.MonkeyPatch,
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
    ) -> None:
        reconfigure(monkeypatch, {"SERVICE_KEY": "not-the-key"})
        job = enqueue(connection, CANCEL, cancelled.payload)

        work(connection, "orders")

        job = fetch(connection, job.id)
        assert job.get_status() == JobStatus.FAILED
        result = job.latest_result()
        assert result is not None
        assert "refused the request with 401" in (result.exc_string or "")
        assert queue(connection).scheduled_job_registry.count == 0
        assert books.stock(cancelled.book_id) == 3


@pytest.fixture
def flaky_books(
    books_database_url: str, monkeypatch: pytest.MonkeyPatch, saga_env: dict[str, str]
) -> Iterator[ServiceProcess]:
    """A second books process on the same database, for the workers only: tests stop and
    restart it while the suite's books process keeps serving everything else."""
    service = ServiceProcess("books.app:create_app", free_port(), books_env(books_database_url))
    service.start()
    reconfigure(monkeypatch, {"WORKERS_BOOKS_URL": service.url})
    yield service
    service.stop()


class TestBooksDown:
    def test_the_job_is_retried_later_and_then_succeeds(
        self,
        flaky_books: ServiceProcess,
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
    ) -> None:
        flaky_books.stop()
        job = enqueue(connection, CANCEL, cancelled.payload)

        work(connection, "orders")

        job = fetch(connection, job.id)
        assert job.get_status() == JobStatus.SCHEDULED
        assert job.retries_left == 4
        assert books.stock(cancelled.book_id) == 3

        flaky_books.start()
        assert release_scheduled(connection) == [job.id]
        work(connection, "orders")

        job = fetch(connection, job.id)
        assert job.get_status() == JobStatus.FINISHED
        assert books.stock(cancelled.book_id) == 5

    def test_after_the_last_retry_the_job_waits_in_the_failed_registry_for_a_requeue(
        self,
        flaky_books: ServiceProcess,
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        flaky_books.stop()
        job = enqueue(connection, CANCEL, cancelled.payload)
        runs = 0
        while job.id not in queue(connection).failed_job_registry:
            work(connection, "orders")
            runs += 1
            release_scheduled(connection)
        assert runs == 6  # the first try and the relay policy's 5 retries

        assert failed.main(["list", "--queue", "orders"]) == 0
        listed = capsys.readouterr().out
        assert job.id in listed
        assert CANCEL in listed
        assert "ServiceUnavailable" in listed

        flaky_books.start()
        assert failed.main(["requeue", "--job-id", job.id]) == 0
        assert capsys.readouterr().out.split() == [job.id]
        work(connection, "orders")

        assert fetch(connection, job.id).get_status() == JobStatus.FINISHED
        assert job.id not in queue(connection).failed_job_registry
        assert books.stock(cancelled.book_id) == 5


class TestRequestId:
    def test_the_request_id_from_the_job_is_in_the_logs_and_sent_to_books(
        self,
        connection: redis.Redis,
        books_service: ServiceProcess,
        cancelled: Cancelled,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.handler.addFilter(CorrelationIdFilter())
        caplog.set_level(logging.INFO)
        enqueue(connection, CANCEL, cancelled.payload, request_id="req-cancel-7f3a")

        work(connection, "orders")

        job_lines = [r for r in caplog.records if r.name == "workers.stock"]
        assert job_lines
        assert {r.correlation_id for r in job_lines} == {"req-cancel-7f3a"}  # type: ignore[attr-defined]
        books_lines = [
            line for line in books_service.output().splitlines() if "req-cancel-7f3a" in line
        ]
        assert any("/internal/v1/stock/releases" in line for line in books_lines)

    def test_a_job_without_a_request_id_gets_a_fresh_one(
        self,
        connection: redis.Redis,
        cancelled: Cancelled,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.handler.addFilter(CorrelationIdFilter())
        caplog.set_level(logging.INFO)
        enqueue(connection, CANCEL, cancelled.payload, request_id=None)

        work(connection, "orders")

        ids = {r.correlation_id for r in caplog.records if r.name == "workers.stock"}  # type: ignore[attr-defined]
        assert len(ids) == 1
        assert None not in ids
