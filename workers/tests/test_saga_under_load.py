"""The saga when customers race for the last copies, and while Redis is down."""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import redis

from devstack.servers import EmbeddedValkey, free_port
from devstack.services import ServiceProcess
from tests.conftest import Books, Orders, relay_orders, work


def place(orders: Orders, book_id: int) -> httpx.Response:
    """One order, on a connection of its own (the calls race from many threads)."""
    return httpx.post(
        orders.http.base_url.join("/v1/orders"),
        json={"items": [{"book_id": book_id, "quantity": 1}]},
        headers={"Authorization": orders.http.headers["Authorization"]},
        timeout=30,
    )


def undelivered(orders_database_url: str) -> int:
    with psycopg.connect(orders_database_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()
    assert row is not None
    return int(row[0])


class TestRaceForTheLastCopies:
    def test_twenty_orders_for_five_copies_confirm_exactly_five(
        self,
        saga_env: dict[str, str],
        connection: redis.Redis,
        redis_url: str,
        orders_database_url: str,
        orders_service: ServiceProcess,
        books: Books,
        orders: Orders,
    ) -> None:
        book = books.create_book(stock=5)
        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(lambda _: place(orders, book["id"]), range(20)))

        placed = [r.json()["id"] for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code == 409]
        assert len(placed) + len(refused) == 20
        assert all(r.json()["type"] == "/problems/insufficient-stock" for r in refused)

        relay_orders(orders_database_url, redis_url)
        work(connection, "orders")

        statuses = [orders.get(order_id)["status"] for order_id in placed]
        assert statuses.count("confirmed") == 5
        assert statuses.count("rejected") == len(placed) - 5
        assert books.stock(book["id"]) == 0


class TestRedisOutage:
    def test_orders_are_accepted_while_redis_is_down_and_settled_once_it_is_back(
        self,
        saga_env: dict[str, str],
        orders_database_url: str,
        orders_service: ServiceProcess,
        books: Books,
        orders: Orders,
    ) -> None:
        book = books.create_book(stock=10)
        port = free_port()
        down_url = f"redis://127.0.0.1:{port}/0"

        placed = [orders.place((book["id"], 1))["id"] for _ in range(3)]
        try:
            relay_orders(orders_database_url, down_url)
        except redis.ConnectionError:
            pass
        else:
            raise AssertionError("the relay delivered to a Redis that is not running")
        assert undelivered(orders_database_url) == 3

        folder = Path(tempfile.mkdtemp(prefix="bookstore-test-outage-"))
        try:
            with EmbeddedValkey(folder, port, persist=False):
                connection = redis.Redis.from_url(down_url)
                assert relay_orders(orders_database_url, down_url) == 3
                assert relay_orders(orders_database_url, down_url) == 0
                work(connection, "orders")
                connection.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

        assert [orders.get(order_id)["status"] for order_id in placed] == ["confirmed"] * 3
        assert books.stock(book["id"]) == 7
        # Each order was placed once, reserved once, and announced confirmed once.
        assert undelivered(orders_database_url) == 3
