"""The outbox relay against real PostgreSQL and a real Redis-compatible server."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from servicekit.relay import APPLICATION_NAME, BACKLOG, PURGED, OutboxRelay, Route

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
        # What the services' migrations add (books 0009, orders 0008).
        conn.execute("CREATE INDEX ON outbox (id) WHERE delivered_at IS NULL")
        conn.execute("CREATE INDEX ON outbox (delivered_at) WHERE delivered_at IS NOT NULL")
        conn.execute(
            """
            CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify(TG_TABLE_NAME, '');
                RETURN NULL;
            END
            $$
            """
        )
        conn.execute(
            "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox"
            " FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
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


MakeRelay = Callable[..., OutboxRelay]


@pytest.fixture
def make_relay(outbox_db: str, redis_url: str) -> Iterator[MakeRelay]:
    """Relays on the test outbox, each closed (its lock released) at the end of the test."""
    relays: list[OutboxRelay] = []

    def make(**overrides: Any) -> OutboxRelay:
        settings: dict[str, Any] = {
            "database_url": outbox_db,
            "redis_url": redis_url,
            "routes": ROUTES,
            "job_id_prefix": "orders-outbox-",
            **overrides,
        }
        relay = OutboxRelay(**settings)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.close()


@contextmanager
def running(relay: OutboxRelay) -> Iterator[OutboxRelay]:
    """The relay's `run()` in a thread for the duration of the block."""
    runner = threading.Thread(target=relay.run)
    runner.start()
    try:
        yield relay
    finally:
        relay.stop()
        runner.join()


def wait_until(condition: Callable[[], bool]) -> None:
    """A generous bound only to never hang; the tests do not measure time."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


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
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.placed", 3)
        relay = make_relay()
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
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.confirmed", 1)
        make_relay().deliver_batch()
        assert queue(redis_client, "notifications").count == 1
        assert queue(redis_client, "orders").count == 0

    def test_unknown_topic_stays_undelivered_and_blocks_nothing(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.teleported", 2)
        add_rows(db, "order.placed", 1)
        relay = make_relay(batch_size=2)
        assert relay.deliver_batch() == 1
        assert relay.deliver_batch() == 0
        relay.measure_backlog()
        assert undelivered(db) == 2
        assert BACKLOG._value.get() == 2
        assert [job.id for job in queue(redis_client, "orders").get_jobs()] == ["orders-outbox-3"]

    def test_a_resent_row_does_not_duplicate_its_job(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        """A relay that died after enqueueing but before marking resends nothing twice."""
        add_rows(db, "order.placed", 2)
        relay = make_relay()
        relay.deliver_batch()
        db.execute("UPDATE outbox SET delivered_at = NULL")
        assert relay.deliver_batch() == 2
        assert queue(redis_client, "orders").job_ids == ["orders-outbox-1", "orders-outbox-2"]
        assert undelivered(db) == 0

    def test_with_tracing_off_a_stored_traceparent_passes_through(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        """A row written by a traced service, relayed by an untraced relay: the job carries
        the request's own context on, so a traced worker still joins the request's trace."""
        db.execute(
            "INSERT INTO outbox (topic, payload, traceparent) VALUES (%s, %s, %s)",
            ["order.placed", Jsonb({"order_id": 1}), TRACEPARENT],
        )
        assert make_relay().deliver_batch() == 1
        (job,) = queue(redis_client, "orders").get_jobs()
        assert job.meta["traceparent"] == TRACEPARENT

    def test_a_row_without_traceparent_gives_a_job_without_one(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.placed", 1)
        make_relay().deliver_batch()
        (job,) = queue(redis_client, "orders").get_jobs()
        assert job.meta["traceparent"] is None


class TestSideBySide:
    def test_one_relay_delivers_the_others_stand_by(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        add_rows(db, "order.placed", 1)
        first, second = make_relay(), make_relay()
        assert first.deliver_batch() == 1
        add_rows(db, "order.placed", 1)
        assert second.deliver_batch() == 0
        assert (first.is_active, second.is_active) == (True, False)

    def test_a_standby_takes_over_when_the_active_relay_is_gone(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        first, second = make_relay(), make_relay()
        first.deliver_batch()
        add_rows(db, "order.placed", 2)
        assert second.deliver_batch() == 0
        first.close()
        # The lock goes when the first relay's backend exits, a moment after it hung up.
        delivered: list[int] = []
        wait_until(lambda: delivered.append(second.deliver_batch()) or sum(delivered) == 2)
        assert queue(redis_client, "orders").count == 2

    def test_relays_running_side_by_side_deliver_each_row_once(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        relays = [make_relay(batch_size=7, poll_interval_s=0.05) for _ in range(3)]
        with running(relays[0]), running(relays[1]), running(relays[2]):
            for _ in range(10):
                add_rows(db, "order.placed", 50)
            wait_until(lambda: undelivered(db) == 0)
        job_ids = queue(redis_client, "orders").job_ids
        assert len(job_ids) == len(set(job_ids)) == 500


class TestWaking:
    def test_a_committed_row_wakes_the_relay(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        """Delivered at once although the fallback poll would wait a minute."""
        relay = make_relay(poll_interval_s=60)
        add_rows(db, "order.placed", 1)
        with running(relay):
            wait_until(lambda: undelivered(db) == 0)  # the first round, at start
            add_rows(db, "order.placed", 1)
            wait_until(lambda: undelivered(db) == 0)
        assert queue(redis_client, "orders").count == 2

    def test_stop_ends_a_wait_at_once(self, make_relay: MakeRelay) -> None:
        relay = make_relay(poll_interval_s=3600)
        runner = threading.Thread(target=relay.run)
        runner.start()
        wait_until(lambda: relay.is_active)
        relay.stop()
        runner.join(timeout=30)
        assert not runner.is_alive()


class TestDatabaseOutage:
    def test_a_killed_session_is_replaced_and_delivery_goes_on(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], redis_client: redis.Redis
    ) -> None:
        relay = make_relay(poll_interval_s=60, backoff_initial_s=0.05)
        with running(relay):
            wait_until(lambda: relay_backends(db) == 1)
            (old_backend,) = db.execute(
                "SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = current_database()",
                [APPLICATION_NAME],
            ).fetchall()
            wait_until(lambda: relay_backends(db) == 1 and relay.is_active)
            add_rows(db, "order.placed", 3)
            wait_until(lambda: undelivered(db) == 0)
            assert relay_pids(db) != [old_backend[1]]
        assert queue(redis_client, "orders").count == 3


def relay_pids(db: psycopg.Connection[Any]) -> list[int]:
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        " AND datname = current_database()",
        [APPLICATION_NAME],
    ).fetchall()
    return [row[0] for row in rows]


def relay_backends(db: psycopg.Connection[Any]) -> int:
    return len(relay_pids(db))


class TestPurge:
    def test_deletes_only_rows_delivered_before_the_retention_in_batches(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any]
    ) -> None:
        add_rows(db, "order.placed", 10)
        db.execute(
            "UPDATE outbox SET created_at = now() - interval '30 days',"
            " delivered_at = CASE WHEN id <= 5 THEN now() - interval '8 days'"
            " WHEN id <= 8 THEN now() - interval '6 days' END"
        )
        relay = make_relay(retention_s=7 * 24 * 3600, purge_batch_size=2)
        purged_before = PURGED._value.get()
        assert [relay.purge_batch() for _ in range(4)] == [2, 2, 1, 0]
        assert PURGED._value.get() - purged_before == 5
        remaining = db.execute("SELECT id FROM outbox ORDER BY id").fetchall()
        assert [row[0] for row in remaining] == [6, 7, 8, 9, 10]

    def test_the_running_relay_purges_until_nothing_is_due(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any]
    ) -> None:
        add_rows(db, "order.placed", 25)
        db.execute("UPDATE outbox SET delivered_at = now() - interval '2 days' WHERE id <= 20")
        relay = make_relay(retention_s=24 * 3600, purge_batch_size=3, purge_interval_s=3600)
        with running(relay):
            wait_until(lambda: count_rows(db) == 5)
        assert undelivered(db) == 0


class TestBacklogGauges:
    def test_rounds_read_the_backlog_once_per_interval(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A quiet outbox makes a round per event: the gauges are read once per interval,
        not by every round."""
        relay = make_relay(metrics_interval_s=2.0)
        measure = relay.measure_backlog
        reads: list[float] = []

        def counted() -> None:
            reads.append(time.monotonic())
            measure()

        monkeypatch.setattr(relay, "measure_backlog", counted)
        for _ in range(3):
            add_rows(db, "order.placed", 1)
            relay._round()
        assert len(reads) == 1
        assert undelivered(db) == 0
        time.sleep(2.1)
        relay._round()
        assert len(reads) == 2
        assert BACKLOG._value.get() == 0


def count_rows(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM outbox").fetchone()
    assert row is not None
    return int(row[0])


class TestRedisOutage:
    def test_rows_wait_while_redis_is_down_and_go_once_it_is_back(
        self, make_relay: MakeRelay, db: psycopg.Connection[Any]
    ) -> None:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        relay = make_relay(
            redis_url=url, poll_interval_s=0.05, backoff_initial_s=0.05, backoff_max_s=0.5
        )
        add_rows(db, "order.placed", 2)
        with pytest.raises(redis.ConnectionError):
            relay.deliver_batch()
        assert undelivered(db) == 2

        # Its own folder (outside pytest's temp tree, which concurrent sessions prune).
        folder = Path(tempfile.mkdtemp(prefix="bookstore-test-outage-"))
        server = EmbeddedValkey(folder, port, persist=False)
        try:
            with running(relay):
                add_rows(db, "order.placed", 1)
                server.start()
                wait_until(lambda: undelivered(db) == 0)
            count = queue(redis.Redis.from_url(url), "orders").count
        finally:
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)
        assert count == 3
