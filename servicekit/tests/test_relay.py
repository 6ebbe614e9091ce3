"""The outbox relay against real PostgreSQL and a real Redis-compatible server."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg.types.json import Jsonb
from rq import Queue
from rq.serializers import JSONSerializer

from devstack.pytest_plugin import create_database, drop_database
from devstack.servers import EmbeddedValkey, free_port
from servicekit.relay import BACKLOG, OutboxRelay, Route

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ROUTES = {
    "order.placed": Route("orders", "workers.stock.place_order"),
    "order.confirmed": Route("notifications", "workers.notifications.order_confirmed"),
}


@pytest.fixture(scope="module")
def outbox_db(postgres_server_url: str) -> Iterator[str]:
    url = create_database(postgres_server_url, "relay_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE outbox (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                topic text NOT NULL,
                payload jsonb NOT NULL,
                request_id text,
                traceparent text,
                created_at timestamptz NOT NULL DEFAULT now(),
                delivered_at timestamptz
            )
            """
        )
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture
def db(outbox_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(outbox_db, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox RESTART IDENTITY")
        yield conn


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


def add_rows(db: psycopg.Connection[Any], topic: str, count: int) -> None:
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO outbox (topic, payload, request_id) VALUES (%s, %s, %s)",
            [(topic, Jsonb({"order_id": n}), f"req-{n}") for n in range(1, count + 1)],
        )


def undelivered(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()
    assert row is not None
    return int(row[0])


def queue(redis_client: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=redis_client, serializer=JSONSerializer)


class TestDelivery:
    def test_each_row_becomes_one_job_with_its_metadata(
        self, outbox_db: str, redis_url: str, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.placed", 3)
        relay = OutboxRelay(outbox_db, redis_url, ROUTES, "orders-outbox-")
        assert relay.deliver_batch() == 3
        assert undelivered(db) == 0
        jobs = queue(redis_client, "orders").get_jobs()
        assert [job.id for job in jobs] == ["orders-outbox-1", "orders-outbox-2", "orders-outbox-3"]
        first = jobs[0]
        assert first.func_name == "workers.stock.place_order"
        assert first.args == [{"order_id": 1}]  # JSON has no tuples
        assert first.meta["request_id"] == "req-1"
        assert first.retries_left == 5
        assert relay.deliver_batch() == 0

    def test_routes_topics_to_their_queues(
        self, outbox_db: str, redis_url: str, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.confirmed", 1)
        OutboxRelay(outbox_db, redis_url, ROUTES, "orders-outbox-").deliver_batch()
        assert queue(redis_client, "notifications").count == 1
        assert queue(redis_client, "orders").count == 0

    def test_unknown_topic_stays_undelivered(
        self, outbox_db: str, redis_url: str, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.teleported", 1)
        relay = OutboxRelay(outbox_db, redis_url, ROUTES, "orders-outbox-")
        assert relay.deliver_batch() == 0
        assert undelivered(db) == 1
        assert BACKLOG._value.get() == 1

    def test_a_resent_row_does_not_duplicate_its_job(
        self, outbox_db: str, redis_url: str, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        """A relay that died after enqueueing but before committing resends nothing twice."""
        add_rows(db, "order.placed", 2)
        relay = OutboxRelay(outbox_db, redis_url, ROUTES, "orders-outbox-")
        relay.deliver_batch()
        db.execute("UPDATE outbox SET delivered_at = NULL")
        assert relay.deliver_batch() == 2
        assert queue(redis_client, "orders").count == 2

    def test_with_tracing_off_a_stored_traceparent_passes_through(
        self, outbox_db: str, redis_url: str, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        """A row written by a traced service, relayed by an untraced relay: the job carries
        the request's own context on, so a traced worker still joins the request's trace."""
        db.execute(
            "INSERT INTO outbox (topic, payload, traceparent) VALUES (%s, %s, %s)",
            ["order.placed", Jsonb({"order_id": 1}), TRACEPARENT],
        )
        assert OutboxRelay(outbox_db, redis_url, ROUTES, "orders-outbox-").deliver_batch() == 1
        (job,) = queue(redis_client, "orders").get_jobs()
        assert job.meta["traceparent"] == TRACEPARENT

    def test_a_row_without_traceparent_gives_a_job_without_one(
        self, outbox_db: str, redis_url: str, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.placed", 1)
        OutboxRelay(outbox_db, redis_url, ROUTES, "orders-outbox-").deliver_batch()
        (job,) = queue(redis_client, "orders").get_jobs()
        assert job.meta["traceparent"] is None

    def test_two_relays_at_once_never_double_deliver(
        self, outbox_db: str, redis_url: str, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.placed", 500)
        relays = [
            OutboxRelay(outbox_db, redis_url, ROUTES, "orders-outbox-", batch_size=7)
            for _ in range(4)
        ]
        delivered = [0] * len(relays)

        def drain(index: int) -> None:
            while (count := relays[index].deliver_batch()) > 0:
                delivered[index] += count

        threads = [threading.Thread(target=drain, args=(n,)) for n in range(len(relays))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(delivered) == 500
        assert sum(1 for count in delivered if count > 0) > 1
        assert queue(redis_client, "orders").count == 500
        assert undelivered(db) == 0


class TestRedisOutage:
    def test_rows_wait_while_redis_is_down_and_go_once_it_is_back(
        self, outbox_db: str, db: psycopg.Connection[Any]
    ) -> None:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        relay = OutboxRelay(
            outbox_db, url, ROUTES, "orders-outbox-", backoff_initial_s=0.05, backoff_max_s=0.5
        )
        add_rows(db, "order.placed", 2)
        with pytest.raises(redis.ConnectionError):
            relay.deliver_batch()
        assert undelivered(db) == 2

        runner = threading.Thread(target=relay.run)
        runner.start()
        # Its own folder (outside pytest's temp tree, which concurrent sessions prune).
        folder = Path(tempfile.mkdtemp(prefix="bookstore-test-outage-"))
        server = EmbeddedValkey(folder, port, persist=False)
        try:
            add_rows(db, "order.placed", 1)
            server.start()
            deadline = time.monotonic() + 30
            while undelivered(db) and time.monotonic() < deadline:
                time.sleep(0.05)
            count = queue(redis.Redis.from_url(url), "orders").count
        finally:
            relay.stop()
            runner.join()
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)
        assert undelivered(db) == 0
        assert count == 3
