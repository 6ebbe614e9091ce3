"""`python -m orders.relay`'s routing: each order event becomes the workers' job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import redis
from psycopg.types.json import Jsonb
from rq import Queue
from rq.serializers import JSONSerializer

from devstack.servers import free_port
from orders.relay import ROUTES
from servicekit.relay import OutboxRelay
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
            relay = OutboxRelay(orders_database_url, redis_url, ROUTES, "orders-outbox-")
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
    def test_delivers_serves_metrics_and_stops_on_sigterm(
        self, db, orders_database_url, redis_url, tmp_path
    ):
        db.execute(
            "INSERT INTO outbox (topic, payload) VALUES ('order.cancelled', %s)",
            [Jsonb({"order_id": 1})],
        )
        connection = redis.Redis.from_url(redis_url)
        connection.flushdb()
        metrics_port = free_port()
        env = {
            **os.environ,
            "ORDERS_DATABASE_URL": orders_database_url,
            "REDIS_URL": redis_url,
            "ORDERS_RELAY_METRICS_PORT": str(metrics_port),
        }
        log_path = tmp_path / "relay.log"
        with log_path.open("wb") as log:
            relay = subprocess.Popen(
                [sys.executable, "-m", "orders.relay"], env=env, stdout=log, stderr=log
            )
            try:
                metrics = wait_for_metrics(
                    relay, metrics_port, 'outbox_rows_delivered_total{topic="order.cancelled"} 1.0'
                )
                assert "outbox_backlog 0.0" in metrics
                assert connection.exists("rq:job:orders-outbox-1")
            finally:
                relay.send_signal(signal.SIGTERM)
                exit_code = relay.wait(timeout=30)
                connection.flushdb()
        assert exit_code == 0, log_path.read_text()
        undelivered = db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
        assert undelivered.fetchone() == (0,)


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
