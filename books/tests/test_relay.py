"""`python -m books.relay`'s routing: discarded covers reach the maintenance queue."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import redis
from psycopg.types.json import Jsonb
from rq import Queue
from rq.serializers import JSONSerializer

from books.relay import ROUTES
from servicekit.relay import OutboxRelay


def test_discarded_cover_becomes_a_maintenance_job(
    books_database_url: str, redis_url: str, db: psycopg.Connection[Any]
) -> None:
    db.execute(
        "INSERT INTO outbox (topic, payload, request_id) VALUES (%s, %s, %s)",
        ["cover.discarded", Jsonb({"public_id": "bookstore/covers/old"}), "req-1"],
    )
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    with OutboxRelay(books_database_url, redis_url, ROUTES, "books-outbox-") as relay:
        assert relay.deliver_batch() == 1
    [job] = Queue("maintenance", connection=connection, serializer=JSONSerializer).get_jobs()
    assert (job.id, job.func_name) == ("books-outbox-1", "workers.covers.delete_image")
    assert job.args == [{"public_id": "bookstore/covers/old"}]
    assert job.meta["request_id"] == "req-1"
    connection.flushdb()


def test_a_committed_row_wakes_the_relay(
    books_database_url: str, redis_url: str, db: psycopg.Connection[Any]
) -> None:
    """The migration's trigger NOTIFYs: delivered although the fallback poll waits an hour."""
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    with OutboxRelay(
        books_database_url, redis_url, ROUTES, "books-outbox-", poll_interval_s=3600
    ) as relay:
        runner = threading.Thread(target=relay.run)
        runner.start()
        try:
            deadline = time.monotonic() + 30
            while not relay.is_active:  # listening, past its first round
                assert time.monotonic() < deadline
                time.sleep(0.02)
            db.execute(
                "INSERT INTO outbox (topic, payload) VALUES (%s, %s)",
                ["cover.discarded", Jsonb({"public_id": "bookstore/covers/old"})],
            )
            while not connection.exists("rq:job:books-outbox-1"):
                assert time.monotonic() < deadline, "the relay was not woken"
                time.sleep(0.02)
        finally:
            relay.stop()
            runner.join()
    connection.flushdb()
