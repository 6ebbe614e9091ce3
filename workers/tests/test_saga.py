"""The stock saga end to end: orders' outbox -> the real relay -> RQ -> jobs -> books/orders.

Orders are placed through orders' public API, their outbox rows delivered by one round of
the servicekit relay with orders' routes, and the jobs run by the workers' worker class.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
import redis
from rq.job import JobStatus

from devstack.services import ServiceProcess
from tests.conftest import (
    Books,
    Orders,
    enqueue,
    fetch,
    movements,
    queue,
    relay_orders,
    work,
)

PLACE = "workers.stock.place_order"
NOTIFY = "workers.notifications.order_confirmed"


def deliver(orders_database_url: str, redis_url: str) -> int:
    """Deliver every waiting outbox row, as the running relay would."""
    return relay_orders(orders_database_url, redis_url)


def outbox_payloads(orders_database_url: str, topic: str) -> list[dict[str, Any]]:
    with psycopg.connect(orders_database_url) as conn:
        rows = conn.execute(
            "SELECT payload FROM outbox WHERE topic = %s ORDER BY id", [topic]
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def book(books: Books) -> dict[str, Any]:
    return books.create_book(stock=5, title="Dune", price="12.50")


class TestPlaceOrder:
    def test_the_request_id_of_the_order_follows_the_job_to_books_and_orders(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        books_service: ServiceProcess,
        orders_service: ServiceProcess,
        orders: Orders,
        book: dict[str, Any],
    ) -> None:
        order = orders.place((book["id"], 1), request_id="req-saga-4b1d")
        deliver(orders_database_url, redis_url)

        work(connection, "orders")

        assert fetch(connection, "orders-outbox-1").meta["request_id"] == "req-saga-4b1d"
        assert any(
            "req-saga-4b1d" in line and "/internal/v1/stock/reservations" in line
            for line in books_service.output().splitlines()
        )
        assert any(
            "req-saga-4b1d" in line and f"/internal/v1/orders/{order['id']}/confirm" in line
            for line in orders_service.output().splitlines()
        )

    def test_reserved_stock_confirms_the_order(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        books_database_url: str,
        books: Books,
        orders: Orders,
        book: dict[str, Any],
    ) -> None:
        order = orders.place((book["id"], 2))
        assert deliver(orders_database_url, redis_url) == 1

        work(connection, "orders")

        job = fetch(connection, "orders-outbox-1")
        assert job.get_status() == JobStatus.FINISHED
        assert job.return_value() == "confirmed"
        assert orders.get(order["id"])["status"] == "confirmed"
        assert books.stock(book["id"]) == 3
        assert movements(books_database_url, f"order:{order['id']}") == [("reserve", book["id"], 2)]

    @pytest.mark.orphans("another order's stock is taken at books directly, as order:999")
    def test_missing_stock_rejects_the_order_with_the_shortage_as_reason(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        books_database_url: str,
        books: Books,
        orders: Orders,
        book: dict[str, Any],
    ) -> None:
        order = orders.place((book["id"], 3))
        # Someone else takes stock after orders' pre-check and before the job runs.
        books.reserve("order:999", (book["id"], 3))
        deliver(orders_database_url, redis_url)

        work(connection, "orders")

        assert fetch(connection, "orders-outbox-1").return_value() == "rejected"
        rejected = orders.get(order["id"])
        assert rejected["status"] == "rejected"
        assert rejected["rejection_reason"] == (
            f"insufficient stock for book {book['id']}: requested 3, available 2"
        )
        assert books.stock(book["id"]) == 2
        assert movements(books_database_url, f"order:{order['id']}") == []

    def test_the_same_order_placed_twice_reserves_once(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        orders_database_url: str,
        books_database_url: str,
        books: Books,
        orders: Orders,
        book: dict[str, Any],
    ) -> None:
        order = orders.place((book["id"], 2))
        [payload] = outbox_payloads(orders_database_url, "order.placed")
        first = enqueue(connection, PLACE, payload, job_id="orders-outbox-1")
        second = enqueue(connection, PLACE, payload, job_id="orders-outbox-1-again")

        work(connection, "orders")

        assert fetch(connection, first.id).return_value() == "confirmed"
        assert fetch(connection, second.id).return_value() == "confirmed"
        assert orders.get(order["id"])["status"] == "confirmed"
        assert books.stock(book["id"]) == 3
        assert len(movements(books_database_url, f"order:{order['id']}")) == 1
        # Confirming twice announced the confirmation once.
        assert len(outbox_payloads(orders_database_url, "order.confirmed")) == 1

    def test_an_order_cancelled_before_its_job_ran_gets_its_stock_back(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        books_database_url: str,
        books: Books,
        orders: Orders,
        book: dict[str, Any],
    ) -> None:
        order = orders.place((book["id"], 2))
        orders.cancel(order["id"])
        assert deliver(orders_database_url, redis_url) == 2

        work(connection, "orders")

        assert fetch(connection, "orders-outbox-1").return_value() == "released"
        assert fetch(connection, "orders-outbox-2").return_value() == "released"
        assert orders.get(order["id"])["status"] == "cancelled"
        assert books.stock(book["id"]) == 5
        assert [kind for kind, _, _ in movements(books_database_url, f"order:{order['id']}")] == [
            "reserve",
            "release",
        ]

    @pytest.mark.orphans("another order's stock is taken at books directly, as order:999")
    def test_a_rejected_order_cancelled_meanwhile_stays_cancelled(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        books: Books,
        orders: Orders,
        book: dict[str, Any],
    ) -> None:
        order = orders.place((book["id"], 3))
        books.reserve("order:999", (book["id"], 3))
        orders.cancel(order["id"])
        deliver(orders_database_url, redis_url)

        work(connection, "orders")

        assert fetch(connection, "orders-outbox-1").get_status() == JobStatus.FINISHED
        assert orders.get(order["id"])["status"] == "cancelled"
        assert books.stock(book["id"]) == 2


class TestCancelConfirmedOrder:
    def test_cancelling_a_confirmed_order_releases_its_stock(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        books: Books,
        orders: Orders,
        book: dict[str, Any],
    ) -> None:
        order = orders.place((book["id"], 2))
        deliver(orders_database_url, redis_url)
        work(connection, "orders")
        assert books.stock(book["id"]) == 3

        orders.cancel(order["id"])
        deliver(orders_database_url, redis_url)
        work(connection, "orders")

        assert orders.get(order["id"])["status"] == "cancelled"
        assert books.stock(book["id"]) == 5
        assert queue(connection).failed_job_registry.count == 0


class TestOrderConfirmedNotification:
    def test_a_confirmed_order_sends_one_mail_record(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        orders: Orders,
        book: dict[str, Any],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        order = orders.place((book["id"], 2), customer_id=17)
        deliver(orders_database_url, redis_url)
        work(connection, "orders")
        assert deliver(orders_database_url, redis_url) == 1
        caplog.set_level(logging.INFO, logger="workers.notifications")

        work(connection, "notifications")

        [mail] = [r for r in caplog.records if r.getMessage() == "email.order_confirmed"]
        assert mail.event == "email.order_confirmed"  # type: ignore[attr-defined]
        assert mail.to == "17"  # type: ignore[attr-defined]
        assert mail.subject == f"Your order {order['id']} is confirmed"  # type: ignore[attr-defined]
        assert "2 x Dune at 12.50" in mail.body  # type: ignore[attr-defined]
        assert "Total: 25.00" in mail.body  # type: ignore[attr-defined]
        assert mail.idempotency_key == f"order-confirmed:{order['id']}"  # type: ignore[attr-defined]

        assert fetch(connection, "orders-outbox-2").get_status() == JobStatus.FINISHED

    def test_a_second_run_of_the_job_mails_nothing(
        self, saga_env: dict[str, str], connection: redis.Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        """As when the worker was killed after the mail, before the job was marked done."""
        payload = {"order_id": 5, "total_price": "1.00", "lines": []}
        caplog.set_level(logging.INFO, logger="workers.notifications")
        first = enqueue(connection, NOTIFY, payload, queue_name="notifications")
        second = enqueue(connection, NOTIFY, payload, queue_name="notifications")

        work(connection, "notifications")

        mails = [r for r in caplog.records if r.getMessage() == "email.order_confirmed"]
        assert len(mails) == 1
        assert fetch(connection, first.id).return_value() == "sent"
        assert fetch(connection, second.id).return_value() == "already sent"
