"""The outbox relay: delivers outbox rows to RQ queues, each exactly once as a job.

A service writes an outbox row in the transaction of the change it announces; this
process turns undelivered rows into RQ jobs.

One connection, one active relay. The relay keeps a single PostgreSQL connection
(autocommit) and reconnects with backoff when it breaks. Several relays may run side by
side: the one holding a session-level advisory lock on the table is active, the others
stand by and take over when its session ends (PostgreSQL releases the lock of a killed or
disconnected relay by itself). One active relay keeps the enqueue order of the rows, and
needs no row locks at all: a round reads a batch of undelivered rows, enqueues them, and
marks them delivered, each statement on its own, so nothing is held while Redis answers.

Exactly once as a job: the job id is derived from the outbox id, and a job that exists
already is not enqueued again, so a row sent again (its relay died between enqueueing and
marking it delivered) finds its job and is only marked. A batch goes to Redis as one
transaction that fails if any of its jobs appears meanwhile (WATCH), so even two relays
that both believe they are active (one cut off from PostgreSQL, still sending its last
batch) never push a job twice. While Redis or the database is
down the relay backs off and the rows wait; nothing is lost.

Waking: an insert trigger on the outbox table sends a `NOTIFY` on a channel named like the
table when its transaction commits (the migrations of books and orders add it); the relay
`LISTEN`s and delivers at once. It also looks every `poll_interval_s` in case a
notification was missed (one sent while it was reconnecting).

Delivered rows older than `retention_s` are deleted by the active relay, at most
`purge_batch_size` rows per statement, every `purge_interval_s` (and again at once while
batches come back full).

With tracing on, each enqueue is a producer span continuing the trace of the request that
wrote the row (its `traceparent`), and the job's meta carries the span's own traceparent
on to the worker.
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import psycopg
import redis
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge, start_http_server
from psycopg import sql
from rq import Queue, Retry
from rq.job import Job
from rq.queue import EnqueueData
from rq.serializers import JSONSerializer

from servicekit import tracing

logger = logging.getLogger(__name__)

DELIVERED = Counter(
    "outbox_rows_delivered_total", "Outbox rows enqueued as RQ jobs, by topic.", ["topic"]
)
PURGED = Counter("outbox_rows_purged_total", "Delivered outbox rows deleted after retention.")
BACKLOG = Gauge(
    "outbox_backlog", "Outbox rows not delivered yet (counted up to BACKLOG_COUNT_LIMIT)."
)
OLDEST_AGE = Gauge(
    "outbox_oldest_undelivered_age_seconds", "Age of the oldest undelivered outbox row."
)
ACTIVE = Gauge("outbox_relay_active", "1 while this relay is the one delivering its outbox.")
ERRORS = Counter("outbox_relay_errors_total", "Relay rounds that failed (Redis or database down).")

# Counting a large backlog costs a scan of it; beyond this the gauge says "at least".
BACKLOG_COUNT_LIMIT = 100_000
APPLICATION_NAME = "outbox-relay"

# id, topic, payload, request_id, traceparent
OutboxRow = tuple[int, str, dict[str, Any], str | None, str | None]


@dataclass(frozen=True)
class Route:
    """Where the rows of one topic go: an RQ queue and a job function (dotted path)."""

    queue: str
    function: str


@dataclass(frozen=True)
class JobPolicy:
    timeout_s: int = 30
    retry_intervals_s: Sequence[int] = (1, 5, 15, 60, 300)
    result_ttl_s: int = 3600
    failure_ttl_s: int = 7 * 24 * 3600


@dataclass
class OutboxRelay:
    database_url: str
    redis_url: str
    routes: Mapping[str, Route]
    job_id_prefix: str
    table: str = "outbox"
    batch_size: int = 100
    poll_interval_s: float = 2.0
    retention_s: float = 7 * 24 * 3600
    purge_interval_s: float = 60.0
    purge_batch_size: int = 1000
    metrics_interval_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    policy: JobPolicy = field(default_factory=JobPolicy)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        self._queues = {
            route.queue: Queue(route.queue, connection=self._redis, serializer=JSONSerializer)
            for route in self.routes.values()
        }
        self._connection: psycopg.Connection[Any] | None = None
        self._active = False
        self._next_purge = 0.0
        self._next_measure = 0.0
        # stop() sends a byte here to end a wait for notifications at once.
        self._wake_receiver, self._waker = socket.socketpair()
        self._waker.setblocking(False)

    def job_id(self, outbox_id: int) -> str:
        return f"{self.job_id_prefix}{outbox_id}"

    @property
    def is_active(self) -> bool:
        """Whether this relay holds its table's lock (and so delivers)."""
        return self._active

    def deliver_batch(self) -> int:
        """Enqueue one batch of undelivered rows; returns how many were delivered (0 while
        another relay is the active one)."""
        conn = self._connected()
        if not self._take_over(conn):
            return 0
        table = sql.Identifier(self.table)
        # Rows of a topic without a route are left out (and stay for an operator and the
        # backlog alert), so that they never block the rows behind them.
        rows = conn.execute(
            sql.SQL(
                "SELECT id, topic, payload, request_id, traceparent FROM {}"
                " WHERE delivered_at IS NULL AND topic = ANY(%s) ORDER BY id LIMIT %s"
            ).format(table),
            [list(self.routes), self.batch_size],
        ).fetchall()
        if rows:
            self._enqueue(rows)
            conn.execute(
                sql.SQL("UPDATE {} SET delivered_at = now() WHERE id = ANY(%s)").format(table),
                [[row[0] for row in rows]],
            )
        return len(rows)

    def purge_batch(self) -> int:
        """Delete up to `purge_batch_size` rows delivered more than `retention_s` ago;
        returns how many were deleted."""
        conn = self._connected()
        table = sql.Identifier(self.table)
        purged = conn.execute(
            sql.SQL(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
                " WHERE delivered_at < now() - make_interval(secs => %s)"
                " ORDER BY delivered_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            ).format(table=table),
            [self.retention_s, self.purge_batch_size],
        ).rowcount
        PURGED.inc(purged)
        return purged

    def measure_backlog(self) -> None:
        """Set the backlog gauges; both reads walk the index of undelivered rows only."""
        conn = self._connected()
        table = sql.Identifier(self.table)
        row = conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM (SELECT FROM {table} WHERE delivered_at IS NULL"
                " LIMIT %s) AS undelivered),"
                " (SELECT created_at FROM {table} WHERE delivered_at IS NULL ORDER BY id LIMIT 1)"
            ).format(table=table),
            [BACKLOG_COUNT_LIMIT],
        ).fetchone()
        count, oldest = row if row is not None else (0, None)
        BACKLOG.set(count)
        OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)

    def _connected(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self.database_url,
                autocommit=True,
                connect_timeout=5,
                application_name=APPLICATION_NAME,
                # A relay whose server vanished without closing the connection notices
                # within ~25 s instead of waiting on a dead socket.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
            self._connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.table)))
            self._active = False
        return self._connection

    def _take_over(self, conn: psycopg.Connection[Any]) -> bool:
        """Become the active relay if none is; the lock lives as long as the session."""
        if not self._active:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s)", [_lock_key(self.table)]
            ).fetchone()
            self._active = bool(row and row[0])
            if self._active:
                logger.info("relay is now the active one for table %s", self.table)
            ACTIVE.set(self._active)
        return self._active

    def _enqueue(self, rows: Sequence[OutboxRow]) -> None:
        """Enqueue the job of every row whose job does not exist yet, in one transaction.

        The job keys are WATCHed before their existence is read, so if another relay
        creates one of them meanwhile the transaction fails (`WatchError`, a RedisError:
        the round is retried) instead of pushing a job twice."""
        job_ids = [self.job_id(row[0]) for row in rows]
        with self._redis.pipeline() as transaction:
            transaction.watch(*(Job.key_for(job_id) for job_id in job_ids))  # type: ignore[no-untyped-call]
            with self._redis.pipeline(transaction=False) as lookup:
                for job_id in job_ids:
                    lookup.exists(Job.key_for(job_id))
                exists = lookup.execute()
            transaction.multi()
            by_queue: dict[str, list[EnqueueData]] = {}
            topics = []
            for row, job_id, sent in zip(rows, job_ids, exists, strict=True):
                if sent:
                    continue  # by a relay that died before marking the row delivered
                route = self.routes[row[1]]
                by_queue.setdefault(route.queue, []).append(self._job_data(row, job_id, route))
                topics.append(row[1])
            for queue, jobs in by_queue.items():
                self._queues[queue].enqueue_many(jobs, pipeline=transaction)
            transaction.execute()
        for topic in topics:
            DELIVERED.labels(topic=topic).inc()

    def _job_data(self, row: OutboxRow, job_id: str, route: Route) -> EnqueueData:
        outbox_id, topic, payload, request_id, traceparent = row
        policy = self.policy
        # The span stands for the decision to send; the job leaves with the batch.
        with tracing.tracer.start_as_current_span(
            f"enqueue {topic}",
            context=tracing.context_from(traceparent),
            kind=SpanKind.PRODUCER,
            attributes=_span_attributes(route, job_id, request_id),
        ):
            return Queue.prepare_data(
                route.function,
                [payload],
                job_id=job_id,
                meta={
                    "request_id": request_id,
                    "outbox_id": outbox_id,
                    "topic": topic,
                    tracing.TRACEPARENT: tracing.current_traceparent(),
                },
                timeout=policy.timeout_s,
                retry=Retry(
                    max=len(policy.retry_intervals_s), interval=list(policy.retry_intervals_s)
                ),
                result_ttl=policy.result_ttl_s,
                failure_ttl=policy.failure_ttl_s,
                description=f"{topic} #{outbox_id}",
            )

    def run(self) -> None:
        """Deliver until `stop()`; back off while Redis or the database is unreachable."""
        backoff = self.backoff_initial_s
        while not self._stopping.is_set():
            try:
                busy = self._round()
            except (redis.RedisError, psycopg.OperationalError) as error:
                ERRORS.inc()
                logger.warning("relay round failed, retrying in %.1f s: %s", backoff, error)
                if isinstance(error, psycopg.OperationalError):
                    self._disconnect()
                self._wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_initial_s
            if not busy:
                self._wait(self.poll_interval_s)

    def _round(self) -> bool:
        """Deliver a batch, purge and measure when due; True when more work is waiting."""
        delivered = self.deliver_batch()
        busy = delivered == self.batch_size
        now = time.monotonic()
        if self._active and now >= self._next_purge:
            purged_full = self.purge_batch() == self.purge_batch_size
            # A full batch means more are due: purge again next round, not after the interval.
            self._next_purge = now if purged_full else now + self.purge_interval_s
            busy = busy or purged_full
        # Once per interval, not after every round: at a few events a second each event is a
        # round of its own, and the gauges (scraped every 15 s or so) took one statement of
        # the three each such round ran.
        if now >= self._next_measure:
            self.measure_backlog()
            self._next_measure = now + self.metrics_interval_s
        return busy

    def _wait(self, timeout: float) -> None:
        """Until a notification on the table's channel, `stop()`, or the timeout."""
        if self._notified():
            return  # received while the round ran its statements: its row may be unseen
        waiting_on: list[Any] = [self._wake_receiver]
        if self._connection is not None:
            waiting_on.append(self._connection.fileno())
        ready, _, _ = select.select(waiting_on, [], [], timeout)
        if self._connection is not None and self._connection.fileno() in ready:
            self._notified()

    def _notified(self) -> bool:
        """Take the notifications received so far (psycopg keeps those that arrive with
        a statement's results); whether there were any."""
        if self._connection is None:
            return False
        try:
            return bool(list(self._connection.notifies(timeout=0)))
        except psycopg.OperationalError:
            self._disconnect()  # the next round reconnects
            return False

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._active = False
        ACTIVE.set(0)

    def stop(self, *_: object) -> None:
        self._stopping.set()
        # A full buffer holds wake-ups enough already.
        with contextlib.suppress(BlockingIOError):
            self._waker.send(b"x")

    def close(self) -> None:
        """Release the connection (and with it the active role) and the wake-up socket."""
        self._disconnect()
        self._redis.close()
        self._wake_receiver.close()
        self._waker.close()

    def __enter__(self) -> OutboxRelay:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _lock_key(table: str) -> int:
    """The advisory lock of a table's relays (advisory locks are per database)."""
    return zlib.crc32(f"servicekit.relay:{table}".encode())


def _span_attributes(route: Route, job_id: str, request_id: str | None) -> dict[str, str]:
    attributes = {
        "messaging.system": "rq",
        "messaging.operation.type": "send",
        "messaging.destination.name": route.queue,
        "messaging.message.id": job_id,
        "code.function.name": route.function,
    }
    if request_id is not None:
        attributes[tracing.REQUEST_ID_ATTRIBUTE] = request_id
    return attributes


def serve(relay: OutboxRelay, *, metrics_port: int) -> None:
    """Run a relay as a process: metrics on `metrics_port`, SIGTERM/SIGINT end it cleanly."""

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("relay stopping (signal %s)", signum)
        relay.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    start_http_server(metrics_port)
    logger.info("relay started; metrics on :%s", metrics_port)
    with relay:
        relay.run()
    logger.info("relay stopped")
