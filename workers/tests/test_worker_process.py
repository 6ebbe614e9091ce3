"""The worker as a real process: graceful shutdown, abandoned jobs, metrics, request ids.

A job is held mid-run by locking its stock reservation row in the books database: the
worker's call to books waits on the lock until the test lets go.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from devstack.servers import free_port
from tests.conftest import (
    Books,
    Cancelled,
    WorkerProcess,
    enqueue,
    fetch,
    live_group,
    movements,
    wait_until,
)
from workers.config import Settings

CANCEL = "workers.stock.cancel_order"
SETTINGS = Settings()
# A dead worker's heartbeat expires, the pool's sweep finds the job, the retry waits its 1 s
# and the scheduler moves it to the queue: about 8 s. Slack for a busy machine.
PICKUP_BOUND_S = SETTINGS.heartbeat_ttl_s + 2 * SETTINGS.maintenance_interval_s + 2 + 10


@contextmanager
def held_reservation(books_database_url: str, reference: str) -> Iterator[None]:
    """Lock a reservation row so that releasing it waits until the block ends."""
    with psycopg.connect(books_database_url) as conn:
        conn.execute(
            "SELECT 1 FROM stock_reservations WHERE reference = %s FOR UPDATE", [reference]
        )
        yield


def job_status(connection: redis.Redis, job_id: str) -> JobStatus:
    return fetch(connection, job_id).get_status()


def listening_sockets(port: int) -> dict[str, str]:
    """Socket inode -> local address of the TCP sockets listening on `port`."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if fields[3] == "0A" and int(port_hex, 16) == port:
            found[fields[9]] = address
    return found


def holders(pids: set[int], inode: str) -> set[int]:
    """Which of `pids` have the socket `inode` open."""
    held = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if any(
                os.readlink(fd) == f"socket:[{inode}]" for fd in Path(f"/proc/{pid}/fd").iterdir()
            ):
                held.add(pid)
    return held


def serves_metrics(port: int) -> bool:
    try:
        return ("workers_redis_up", ()) in scrape(port)
    except httpx.HTTPError:
        return False


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class TestGracefulShutdown:
    @pytest.mark.timeout(120)
    def test_sigterm_lets_the_running_job_finish_then_exits(
        self,
        start_worker: Callable[..., WorkerProcess],
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
        books_database_url: str,
    ) -> None:
        worker = start_worker(WORKERS_PROCESSES="1", WORKERS_HTTP_TIMEOUT_S="60")
        with held_reservation(books_database_url, cancelled.reference):
            job = enqueue(connection, CANCEL, cancelled.payload, request_id="req-sigterm-1")
            wait_until(
                lambda: job_status(connection, job.id) == JobStatus.STARTED,
                timeout_s=30,
                what="the worker to start the job",
            )
            worker.process.send_signal(signal.SIGTERM)
            # The pool passed the request on: the busy worker has noted it and keeps going.
            wait_until(
                lambda: any(
                    w.shutdown_requested_date is not None
                    for w in Worker.all(connection=connection, serializer=JSONSerializer)
                ),
                timeout_s=30,
                what="the worker to note the shutdown request",
            )
            assert worker.process.poll() is None
            assert job_status(connection, job.id) == JobStatus.STARTED

        assert worker.wait(timeout_s=60) == 0
        assert job_status(connection, job.id) == JobStatus.FINISHED
        assert books.stock(cancelled.book_id) == 5
        job_lines = [r for r in worker.log_records() if r.get("logger") == "workers.stock"]
        assert job_lines
        assert {r["request_id"] for r in job_lines} == {"req-sigterm-1"}
        # RQ's own lines keep the job's start and outcome, not its routine ones.
        rq_lines = [r["message"] for r in worker.log_records() if r.get("logger") == "rq.worker"]
        assert any(line.endswith(f"({job.id})") for line in rq_lines)
        assert any(line.startswith("Successfully completed") for line in rq_lines)
        assert not any("Job OK" in line or "is kept for" in line for line in rq_lines)
        assert not any("cleaning" in line for line in rq_lines)


class TestAbandonedJob:
    @pytest.mark.timeout(300)
    def test_a_job_whose_worker_was_killed_runs_again_and_changes_stock_once(
        self,
        start_worker: Callable[..., WorkerProcess],
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
        books_database_url: str,
    ) -> None:
        killed = start_worker(WORKERS_PROCESSES="1", WORKERS_HTTP_TIMEOUT_S="60")
        with held_reservation(books_database_url, cancelled.reference):
            job = enqueue(connection, CANCEL, cancelled.payload)
            wait_until(
                lambda: job_status(connection, job.id) == JobStatus.STARTED,
                timeout_s=30,
                what="the worker to start the job",
            )
            killed.kill_all()
        assert job_status(connection, job.id) == JobStatus.STARTED

        metrics_port = free_port()
        start_worker(WORKERS_METRICS_PORT=str(metrics_port))
        wait_until(
            lambda: job_status(connection, job.id) == JobStatus.FINISHED,
            timeout_s=PICKUP_BOUND_S,
            what="the abandoned job to run again",
        )

        assert books.stock(cancelled.book_id) == 5
        assert [kind for kind, _, _ in movements(books_database_url, cancelled.reference)] == [
            "reserve",
            "release",
        ]
        labels = (("function", CANCEL), ("queue", "orders"))
        samples = scrape(metrics_port)
        assert samples[("workers_jobs_abandoned_total", labels)] == 1
        assert samples[("workers_jobs_succeeded_total", labels)] == 1

    @pytest.mark.timeout(120)
    def test_the_pool_runs_again_the_job_of_a_worker_killed_mid_run(
        self,
        start_worker: Callable[..., WorkerProcess],
        connection: redis.Redis,
        books: Books,
        cancelled: Cancelled,
        books_database_url: str,
    ) -> None:
        metrics_port = free_port()
        start_worker(WORKERS_METRICS_PORT=str(metrics_port), WORKERS_HTTP_TIMEOUT_S="60")
        with held_reservation(books_database_url, cancelled.reference):
            job = enqueue(connection, CANCEL, cancelled.payload)
            wait_until(
                lambda: job_status(connection, job.id) == JobStatus.STARTED,
                timeout_s=30,
                what="the worker to start the job",
            )
            worker_name = fetch(connection, job.id).worker_name
            worker = Worker.find_by_key(
                Worker.redis_worker_namespace_prefix + worker_name,
                connection=connection,
                serializer=JSONSerializer,
            )
            assert worker is not None
            os.kill(worker.pid, signal.SIGKILL)

        wait_until(
            lambda: job_status(connection, job.id) == JobStatus.FINISHED,
            timeout_s=PICKUP_BOUND_S,
            what="the abandoned job to run again",
        )
        assert [kind for kind, _, _ in movements(books_database_url, cancelled.reference)] == [
            "reserve",
            "release",
        ]
        labels = (("function", CANCEL), ("queue", "orders"))
        samples = scrape(metrics_port)
        assert samples[("workers_jobs_abandoned_total", labels)] == 1
        assert samples[("workers_jobs_succeeded_total", labels)] == 1


class TestStartup:
    def test_refuses_to_start_without_a_service_key(
        self, start_worker: Callable[..., WorkerProcess]
    ) -> None:
        worker = start_worker(SERVICE_KEY="")

        assert worker.wait(timeout_s=30) == 2
        assert "SERVICE_KEY is not set" in worker.output()

    @pytest.mark.timeout(120)
    def test_serves_metrics_and_stops_on_sigterm_without_a_metrics_dir_set(
        self, start_worker: Callable[..., WorkerProcess], connection: redis.Redis
    ) -> None:
        port = free_port()
        worker = start_worker(PROMETHEUS_MULTIPROC_DIR="", WORKERS_METRICS_PORT=str(port))

        def metrics_served() -> bool:
            try:
                return ("workers_redis_up", ()) in scrape(port)
            except httpx.HTTPError:
                return False

        wait_until(metrics_served, timeout_s=30, what="the metrics endpoint")
        assert scrape(port)[("workers_queue_depth", (("queue", "orders"),))] == 0
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout_s=60) == 0


class TestSupervision:
    @pytest.mark.timeout(120)
    def test_only_the_pool_holds_the_metrics_socket_on_the_loopback(
        self, start_worker: Callable[..., WorkerProcess]
    ) -> None:
        port = free_port()
        pool = start_worker(WORKERS_METRICS_PORT=str(port))
        wait_until(lambda: serves_metrics(port), timeout_s=30, what="the metrics endpoint")
        # The pool and its two workers.
        wait_until(lambda: len(live_group(pool.process.pid)) >= 3, timeout_s=30, what="the workers")

        [(inode, address)] = listening_sockets(port).items()
        assert address == "0100007F"  # 127.0.0.1
        assert holders(live_group(pool.process.pid), inode) == {pool.process.pid}

    @pytest.mark.timeout(120)
    def test_a_sigkilled_pool_leaves_no_process_behind_and_a_new_one_takes_over(
        self, start_worker: Callable[..., WorkerProcess], connection: redis.Redis
    ) -> None:
        port = free_port()
        killed = start_worker(WORKERS_METRICS_PORT=str(port))
        wait_until(lambda: serves_metrics(port), timeout_s=30, what="the metrics endpoint")
        wait_until(
            lambda: len(live_group(killed.process.pid)) >= 3, timeout_s=30, what="the workers"
        )

        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait()
        wait_until(
            lambda: not live_group(killed.process.pid),
            timeout_s=30,
            what="the workers to die with their pool",
        )
        restarted = start_worker(WORKERS_METRICS_PORT=str(port))
        wait_until(
            lambda: restarted.process.poll() is not None or serves_metrics(port),
            timeout_s=30,
            what="the restarted pool to serve its metrics",
        )
        assert restarted.process.poll() is None, restarted.output()
        job = enqueue(
            connection,
            "workers.notifications.order_confirmed",
            {"order_id": 7, "total_price": "1.00", "lines": []},
            queue_name="notifications",
        )
        wait_until(
            lambda: job_status(connection, job.id) == JobStatus.FINISHED,
            timeout_s=30,
            what="the restarted pool to run a job",
        )
