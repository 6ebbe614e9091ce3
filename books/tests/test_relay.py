"""`python -m books.relay`'s routing: discarded covers reach the maintenance queue."""

from __future__ import annotations

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
    relay = OutboxRelay(books_database_url, redis_url, ROUTES, "books-outbox-")
    assert relay.deliver_batch() == 1
    [job] = Queue("maintenance", connection=connection, serializer=JSONSerializer).get_jobs()
    assert (job.id, job.func_name) == ("books-outbox-1", "workers.covers.delete_image")
    assert job.args == [{"public_id": "bookstore/covers/old"}]
    assert job.meta["request_id"] == "req-1"
    connection.flushdb()
