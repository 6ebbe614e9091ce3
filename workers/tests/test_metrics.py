"""Job counters from the worker, and queue gauges read from Redis at scrape time."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from prometheus_client import REGISTRY

from tests.conftest import enqueue, queue, release_scheduled, work
from workers.config import QUEUES
from workers.metrics import QueueCollector

NOTIFY = "workers.notifications.order_confirmed"
CANCEL = "workers.stock.cancel_order"
LABELS = {"queue": "notifications", "function": NOTIFY}
CONFIRMED = {
    "order_id": 1,
    "customer_id": None,
    "total_price": "39.98",
    "lines": [{"book_id": 1, "book_title": "Dune", "quantity": 2, "unit_price": "19.99"}],
}


def counts() -> dict[str, float]:
    return {
        event: REGISTRY.get_sample_value(f"workers_jobs_{event}_total", LABELS) or 0.0
        for event in ("started", "succeeded", "failed", "retried")
    }


def schedule(connection: redis.Redis) -> None:
    """A job waiting in the scheduled registry, as a retry waits out its interval."""
    queue(connection, "notifications").enqueue_in(timedelta(minutes=1), NOTIFY, CONFIRMED)


def gauges(connection: redis.Redis) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("queue", "")): sample.value
        for family in QueueCollector(connection, QUEUES).collect()
        for sample in family.samples
    }


class TestJobCounters:
    def test_each_outcome_is_counted_by_queue_and_function(self, connection: redis.Redis) -> None:
        before = counts()
        durations_before = (
            REGISTRY.get_sample_value("workers_job_duration_seconds_count", LABELS) or 0.0
        )
        enqueue(connection, NOTIFY, CONFIRMED, queue_name="notifications")
        enqueue(connection, NOTIFY, {"order_id": "not a number"}, queue_name="notifications")

        work(connection, "notifications")

        after = counts()
        assert {event: after[event] - before[event] for event in after} == {
            "started": 2,
            "succeeded": 1,
            "failed": 1,
            "retried": 0,
        }
        durations = REGISTRY.get_sample_value("workers_job_duration_seconds_count", LABELS)
        assert durations == durations_before + 2

    @pytest.mark.usefixtures("books_down")
    def test_a_failure_with_retries_left_counts_as_retried(self, connection: redis.Redis) -> None:
        labels = {"queue": "orders", "function": CANCEL}

        def count(event: str) -> float:
            return REGISTRY.get_sample_value(f"workers_jobs_{event}_total", labels) or 0.0

        before = {event: count(event) for event in ("retried", "failed")}
        enqueue(connection, CANCEL, {"order_id": 1})

        work(connection, "orders")

        assert {event: count(event) - before[event] for event in before} == {
            "retried": 1,
            "failed": 0,
        }


class TestQueueCollector:
    def test_reports_waiting_scheduled_and_failed_jobs_per_queue(
        self, connection: redis.Redis
    ) -> None:
        enqueue(connection, NOTIFY, CONFIRMED, queue_name="notifications")
        enqueue(connection, NOTIFY, {"bad": "payload"}, queue_name="notifications")
        schedule(connection)
        work(connection, "notifications")
        enqueue(connection, NOTIFY, CONFIRMED, queue_name="notifications")
        enqueue(connection, NOTIFY, CONFIRMED, queue_name="maintenance")

        values = gauges(connection)

        assert values[("workers_redis_up", "")] == 1
        assert values[("workers_queue_depth", "notifications")] == 1
        assert values[("workers_queue_depth", "maintenance")] == 1
        assert values[("workers_queue_depth", "orders")] == 0
        assert values[("workers_failed_jobs", "notifications")] == 1
        assert values[("workers_scheduled_jobs", "notifications")] == 1
        assert values[("workers_failed_jobs", "orders")] == 0

    def test_counts_follow_the_registries_without_stale_values(
        self, connection: redis.Redis
    ) -> None:
        schedule(connection)
        assert gauges(connection)[("workers_scheduled_jobs", "notifications")] == 1

        release_scheduled(connection, "notifications")

        values = gauges(connection)
        assert values[("workers_scheduled_jobs", "notifications")] == 0
        assert values[("workers_queue_depth", "notifications")] == 1
        assert queue(connection, "notifications").count == 1

    def test_redis_down_reports_redis_up_zero(self) -> None:
        unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)

        assert gauges(unreachable) == {("workers_redis_up", ""): 0}
