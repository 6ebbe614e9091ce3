"""The outbox relay: delivers outbox rows to RQ queues, each exactly once as a job.

A service writes an outbox row in the transaction of the change it announces; this
process turns undelivered rows into RQ jobs. Rows are claimed with `FOR UPDATE SKIP
LOCKED`, so several relays can run side by side without taking the same row, and are
marked delivered in the same transaction after their jobs are enqueued. The job id is
derived from the outbox id and a job that already exists is not enqueued again: a relay
that dies between enqueueing and committing resends nothing twice. While Redis or the
database is down the relay backs off and the rows wait; nothing is lost.

With tracing on, each enqueue is a producer span continuing the trace of the request that
wrote the row (its `traceparent`), and the job's meta carries the span's own traceparent
on to the worker.
"""

from __future__ import annotations

import logging
import signal
import threading
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
from rq.serializers import JSONSerializer

from servicekit import tracing

logger = logging.getLogger(__name__)

DELIVERED = Counter(
    "outbox_rows_delivered_total", "Outbox rows enqueued as RQ jobs, by topic.", ["topic"]
)
BACKLOG = Gauge("outbox_backlog", "Outbox rows not delivered yet.")
OLDEST_AGE = Gauge(
    "outbox_oldest_undelivered_age_seconds", "Age of the oldest undelivered outbox row."
)
ERRORS = Counter("outbox_relay_errors_total", "Relay rounds that failed (Redis or database down).")


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
    idle_wait_s: float = 0.1
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

    def job_id(self, outbox_id: int) -> str:
        return f"{self.job_id_prefix}{outbox_id}"

    def deliver_batch(self) -> int:
        """Enqueue one batch of undelivered rows; returns how many were delivered."""
        table = sql.Identifier(self.table)
        with psycopg.connect(self.database_url, connect_timeout=5) as conn, conn.transaction():
            rows = conn.execute(
                sql.SQL(
                    "SELECT id, topic, payload, request_id, traceparent FROM {}"
                    " WHERE delivered_at IS NULL"
                    " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(table),
                [self.batch_size],
            ).fetchall()
            delivered = [row[0] for row in rows if self._enqueue(*row)]
            if delivered:
                conn.execute(
                    sql.SQL("UPDATE {} SET delivered_at = now() WHERE id = ANY(%s)").format(table),
                    [delivered],
                )
            self._measure_backlog(conn)
        return len(delivered)

    def _enqueue(
        self,
        outbox_id: int,
        topic: str,
        payload: dict[str, Any],
        request_id: str | None,
        traceparent: str | None,
    ) -> bool:
        route = self.routes.get(topic)
        if route is None:
            # A topic without a route is a bug in the writer; the row stays for an operator
            # and the backlog alert, instead of being dropped.
            logger.error("outbox row %s has unknown topic %r", outbox_id, topic)
            return False
        job_id = self.job_id(outbox_id)
        if Job.exists(job_id, connection=self._redis):
            return True
        policy = self.policy
        with tracing.tracer.start_as_current_span(
            f"enqueue {topic}",
            context=tracing.context_from(traceparent),
            kind=SpanKind.PRODUCER,
            attributes=_span_attributes(route, job_id, request_id),
        ):
            self._queues[route.queue].enqueue(
                route.function,
                payload,
                job_id=job_id,
                meta={
                    "request_id": request_id,
                    "outbox_id": outbox_id,
                    "topic": topic,
                    tracing.TRACEPARENT: tracing.current_traceparent(),
                },
                job_timeout=policy.timeout_s,
                retry=Retry(
                    max=len(policy.retry_intervals_s), interval=list(policy.retry_intervals_s)
                ),
                result_ttl=policy.result_ttl_s,
                failure_ttl=policy.failure_ttl_s,
                description=f"{topic} #{outbox_id}",
            )
        DELIVERED.labels(topic=topic).inc()
        return True

    def _measure_backlog(self, conn: psycopg.Connection[Any]) -> None:
        count, oldest = conn.execute(
            sql.SQL("SELECT count(*), min(created_at) FROM {} WHERE delivered_at IS NULL").format(
                sql.Identifier(self.table)
            )
        ).fetchone() or (0, None)
        BACKLOG.set(count)
        OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)

    def run(self) -> None:
        """Deliver until `stop()`; back off while Redis or the database is unreachable."""
        backoff = self.backoff_initial_s
        while not self._stopping.is_set():
            try:
                delivered = self.deliver_batch()
            except (redis.RedisError, psycopg.OperationalError) as error:
                ERRORS.inc()
                logger.warning("relay round failed, retrying in %.1f s: %s", backoff, error)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_initial_s
            if delivered < self.batch_size:
                self._stopping.wait(self.idle_wait_s)

    def stop(self, *_: object) -> None:
        self._stopping.set()


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
    relay.run()
    logger.info("relay stopped")
