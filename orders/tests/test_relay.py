"""`python -m orders.relay`'s routing: each order event becomes the workers' job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import redis
from psycopg.types.json import Jsonb
from rq import Queue
from rq.serializers import JSONSerializer

from devstack.servers import free_port
from orders.relay import ROUTES
from servicekit.relay import APPLICATION_NAME, OutboxRelay
from tests.conftest import SERVICE_HEADERS, order_body


class TestOrdersRouting:
    async def test_placed_confirmed_and_cancelled_become_their_jobs(
        self, client, make_book, db, orders_database_url, redis_url
    ):
        book = await make_book(title="Emma", price="4.50")
        order_id = (
            await client.post(
                "/v1/orders",
                json=order_body((book["id"], 2)),
                headers={"X-Request-ID": "req-relay-1"},
            )
        ).json()["id"]
        await client.post(f"/internal/v1/orders/{order_id}/confirm", headers=SERVICE_HEADERS)
        await client.post(f"/v1/orders/{order_id}/cancel")
        connection = redis.Redis.from_url(redis_url)
        connection.flushdb()
        try:
            with OutboxRelay(orders_database_url, redis_url, ROUTES, "orders-outbox-") as relay:
                assert relay.deliver_batch() == 3
                assert relay.deliver_batch() == 0

            def jobs(queue: str) -> list[tuple[str, str | None, list[object]]]:
                found = Queue(queue, connection=connection, serializer=JSONSerializer).get_jobs()
                return [(job.id, job.func_name, list(job.args)) for job in found]

            assert jobs("orders") == [
                (
                    "orders-outbox-1",
                    "workers.stock.place_order",
                    [{"order_id": order_id, "lines": [{"book_id": book["id"], "quantity": 2}]}],
                ),
                ("orders-outbox-3", "workers.stock.cancel_order", [{"order_id": order_id}]),
            ]
            assert jobs("notifications") == [
                (
                    "orders-outbox-2",
                    "workers.notifications.order_confirmed",
                    [
                        {
                            "order_id": order_id,
                            "customer_id": None,
                            "total_price": "9.00",
                            "lines": [
                                {
                                    "book_id": book["id"],
                                    "book_title": "Emma",
                                    "quantity": 2,
                                    "unit_price": "4.50",
                                }
                            ],
                        }
                    ],
                )
            ]
            placed = Queue("orders", connection=connection, serializer=JSONSerializer).get_jobs()[0]
            assert placed.meta["request_id"] == "req-relay-1"
            undelivered = db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
            assert undelivered.fetchone() == (0,)
        finally:
            connection.flushdb()


class TestRelayProcess:
    def test_delivers_wakes_on_notify_serves_metrics_and_stops_on_sigterm(
        self, db, orders_database_url, redis_url, tmp_path
    ):
        """The second row is delivered at once: the fallback poll is set to an hour, so
        only the NOTIFY of the migration's trigger can have woken the relay."""
        add_cancellations(db, 1)
        connection = redis.Redis.from_url(redis_url)
        connection.flushdb()
        metrics_port = free_port()
        log_path = tmp_path / "relay.log"
        with log_path.open("wb") as log:
            relay = start_relay(orders_database_url, redis_url, metrics_port, log)
            try:
                wait_for_metrics(
                    relay, metrics_port, 'outbox_rows_delivered_total{topic="order.cancelled"} 1.0'
                )
                add_cancellations(db, 1)
                metrics = wait_for_metrics(
                    relay, metrics_port, 'outbox_rows_delivered_total{topic="order.cancelled"} 2.0'
                )
                assert "outbox_relay_active 1.0" in metrics
                assert connection.exists("rq:job:orders-outbox-2")
            finally:
                relay.send_signal(signal.SIGTERM)
                exit_code = relay.wait(timeout=30)
                connection.flushdb()
        assert exit_code == 0, log_path.read_text()
        assert undelivered(db) == 0

    def test_a_relay_killed_between_enqueueing_and_marking_sends_nothing_twice(
        self, db, orders_database_url, redis_url, tmp_path
    ):
        """The relay's UPDATE waits on a lock the test holds while its jobs are in Redis; it
        is SIGKILLed there, its statement dies with its session, and the next relay finds
        the rows undelivered and their jobs existing."""
        add_cancellations(db, 30)
        connection = redis.Redis.from_url(redis_url)
        connection.flushdb()
        orders = Queue("orders", connection=connection, serializer=JSONSerializer)
        # PostgreSQL ends the session of a vanished client only when it next checks.
        checked_url = f"{orders_database_url}?options=-c%20client_connection_check_interval%3D50"
        with (
            (tmp_path / "relay.log").open("wb") as log,
            psycopg.connect(orders_database_url) as blocker,
        ):
            blocker.execute("LOCK TABLE outbox IN SHARE MODE")
            killed = start_relay(checked_url, redis_url, free_port(), log)
            try:
                wait_until(lambda: orders.count == 30 and relay_waits_on_lock(db))
            finally:
                killed.kill()
                killed.wait()
            wait_until(lambda: relay_sessions(db) == 0)
            blocker.rollback()
            assert undelivered(db) == 30

            metrics_port = free_port()
            relay = start_relay(orders_database_url, redis_url, metrics_port, log)
            try:
                wait_until(lambda: undelivered(db) == 0)
            finally:
                relay.send_signal(signal.SIGTERM)
                relay.wait(timeout=30)
        job_ids = orders.job_ids
        connection.flushdb()
        assert sorted(job_ids) == sorted(f"orders-outbox-{n}" for n in range(1, 31))


def add_cancellations(db, count: int) -> None:
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO outbox (topic, payload) VALUES ('order.cancelled', %s)",
            [[Jsonb({"order_id": n})] for n in range(1, count + 1)],
        )


def undelivered(db) -> int:
    return db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]


def relay_sessions(db) -> int:
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND datname = current_database()",
        [APPLICATION_NAME],
    ).fetchone()[0]


def relay_waits_on_lock(db) -> bool:
    return db.execute(
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = %s"
        " AND datname = current_database() AND wait_event_type = 'Lock')",
        [APPLICATION_NAME],
    ).fetchone()[0]


def start_relay(database_url: str, redis_url: str, metrics_port: int, log) -> subprocess.Popen:
    env = {
        **os.environ,
        "ORDERS_DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ORDERS_RELAY_METRICS_PORT": str(metrics_port),
        "ORDERS_RELAY_POLL_INTERVAL_S": "3600",
    }
    return subprocess.Popen([sys.executable, "-m", "orders.relay"], env=env, stdout=log, stderr=log)


def wait_until(condition) -> None:
    """A generous bound only to never hang; nothing here measures time."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def wait_for_metrics(relay: subprocess.Popen[bytes], port: int, line: str) -> str:
    """The relay's metrics once `line` is in them; a generous bound only to never hang."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and relay.poll() is None:
        try:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        except httpx.TransportError:
            metrics = ""
        if line in metrics:
            return metrics
        time.sleep(0.05)
    raise AssertionError(f"the relay never reported {line!r} (exit code {relay.poll()})")
