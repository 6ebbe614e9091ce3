"""Prometheus metrics of the workers, served on their own port.

Events are counters incremented where they happen (a job started, succeeded, was retried,
failed for good, was found abandoned), so a rate survives registries whose entries expire.
What is waiting right now (queue depth, failed and scheduled jobs) is read from Redis at
scrape time by a collector, never kept in a gauge that could go stale.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Sequence

import redis
from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue
from rq.job import Job

from servicekit.metrics import service_registry

logger = logging.getLogger(__name__)

JOB_LABELS = ("queue", "function")

JOBS_STARTED = Counter("workers_jobs_started_total", "Jobs a worker began to run.", JOB_LABELS)
JOBS_SUCCEEDED = Counter(
    "workers_jobs_succeeded_total", "Jobs that ran to the end without an error.", JOB_LABELS
)
JOBS_RETRIED = Counter(
    "workers_jobs_retried_total", "Failed runs that RQ scheduled to run again.", JOB_LABELS
)
JOBS_FAILED = Counter(
    "workers_jobs_failed_total",
    "Jobs that failed for good and moved to the FailedJobRegistry.",
    JOB_LABELS,
)
JOBS_ABANDONED = Counter(
    "workers_jobs_abandoned_total",
    "Jobs whose worker died mid-run, found by the registry cleanup (then retried or failed).",
    JOB_LABELS,
)
JOBS_REDRIVEN = Counter(
    "workers_jobs_redriven_total",
    "Jobs no list held, put back in their queue by the pool's sweep: taken by a worker that "
    "died before starting them, or lost (queued or started, yet in no list or registry).",
    ["queue", "reason"],
)
JOB_DURATION = Histogram(
    "workers_job_duration_seconds",
    "Time from a job's start to its outcome being recorded.",
    JOB_LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

SAGAS = ("order", "borrow", "release")
SETTLE_ACTIONS = ("redriven", "given_up")
SAGA_ROWS_SETTLED = Counter(
    "workers_saga_rows_settled_total",
    "Pending orders and borrows whose job was overdue, and stock releases of cancelled "
    "orders no job reported done (saga=release): announced again (redriven), or rejected "
    "after the last attempt (given_up; never for releases), by the reconciler.",
    ["saga", "action"],
)

NOTICES = Counter(
    "workers_notices_total",
    "Library notices mailed (sent) or not (failed: the SMTP server refused or was unreachable).",
    ["kind", "outcome"],
)


def job_labels(job: Job) -> tuple[str, str]:
    """(queue, function) of a job; a job whose data cannot be read still gets counted."""
    try:
        function = job.func_name
    except Exception:  # a corrupt job raises DeserializationError or worse
        function = "<unreadable>"
    return job.origin, function or "<unknown>"


class QueueCollector(Collector):
    """Gauges read from Redis at scrape time: jobs waiting, failed, and scheduled per queue."""

    def __init__(self, connection: redis.Redis, queue_names: Sequence[str]) -> None:
        self.connection = connection
        self.queues = [Queue(name, connection=connection) for name in queue_names]

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("workers_redis_up", "1 when the last scrape could read Redis.")
        depth = GaugeMetricFamily(
            "workers_queue_depth", "Jobs waiting in each queue.", labels=["queue"]
        )
        failed = GaugeMetricFamily(
            "workers_failed_jobs",
            "Jobs in each queue's FailedJobRegistry (the dead-letter queue).",
            labels=["queue"],
        )
        scheduled = GaugeMetricFamily(
            "workers_scheduled_jobs",
            "Jobs waiting for their retry time in each queue's ScheduledJobRegistry.",
            labels=["queue"],
        )
        now = time.time()
        try:
            with self.connection.pipeline(transaction=False) as pipeline:
                for queue in self.queues:
                    pipeline.llen(queue.key)
                    # Entries past their failure_ttl are on their way out; do not count them.
                    pipeline.zcount(queue.failed_job_registry.key, now, "+inf")
                    pipeline.zcard(queue.scheduled_job_registry.key)
                counts = pipeline.execute()
        except redis.RedisError as exc:
            logger.warning("could not read queue sizes from Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for index, queue in enumerate(self.queues):
            waiting, in_failed, in_scheduled = counts[3 * index : 3 * index + 3]
            depth.add_metric([queue.name], waiting)
            failed.add_metric([queue.name], in_failed)
            scheduled.add_metric([queue.name], in_scheduled)
        yield from (up, depth, failed, scheduled)


def serve_metrics(
    host: str, port: int, connection: redis.Redis, queue_names: Sequence[str]
) -> socket.socket:
    """Serve /metrics on `host`:`port` from a background thread; the listening socket.

    With PROMETHEUS_MULTIPROC_DIR set (several worker processes, or forked work horses),
    the counters of every process are summed from that directory.
    """
    registry = service_registry()
    registry.register(QueueCollector(connection, queue_names))
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server.socket
