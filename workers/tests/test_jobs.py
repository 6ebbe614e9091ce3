"""Only our job functions run: a job naming any other dotted path is refused unimported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis
from rq import Callback
from rq.job import JobStatus

from books.relay import ROUTES as BOOKS_ROUTES
from orders.relay import ROUTES as ORDERS_ROUTES
from tests.conftest import WorkerProcess, enqueue, fetch, queue, wait_until, work
from workers.jobs import JOB_FUNCTIONS, PERIODIC


class TestAllowList:
    def test_names_every_function_the_relays_and_the_periodic_jobs_enqueue(self) -> None:
        routed = {route.function for route in [*BOOKS_ROUTES.values(), *ORDERS_ROUTES.values()]}
        periodic = {job.function for job in PERIODIC}
        assert periodic == {"workers.loans.library_sweep", "workers.reconcile.reconcile"}
        assert routed | periodic <= JOB_FUNCTIONS

    def test_a_refused_job_fails_at_once_with_its_reason(self, connection: redis.Redis) -> None:
        job = enqueue(connection, "os.getcwd", {}, queue_name="maintenance")

        work(connection, "maintenance")

        failed = fetch(connection, job.id)
        assert failed.get_status() == JobStatus.FAILED
        assert failed.retries_left == 0
        assert queue(connection, "maintenance").failed_job_registry.get_job_ids() == [job.id]
        result = failed.latest_result()
        assert result is not None
        assert "RefusedJob: job " in (result.exc_string or "")
        assert "'os.getcwd', which is not one of our job functions" in (result.exc_string or "")

    def test_a_job_with_a_callback_is_refused(self, connection: redis.Redis) -> None:
        job = queue(connection, "maintenance").enqueue(
            "workers.bench.noop",
            {},
            on_failure=Callback("os.getcwd"),
            on_success=Callback("os.getcwd"),
        )

        work(connection, "maintenance")

        failed = fetch(connection, job.id)
        assert failed.get_status() == JobStatus.FAILED
        result = failed.latest_result()
        assert result is not None
        assert "names callbacks ['os.getcwd', 'os.getcwd']: refused" in (result.exc_string or "")


class TestWorkerProcess:
    def test_os_system_is_neither_imported_nor_called(
        self,
        start_worker: Callable[..., WorkerProcess],
        connection: redis.Redis,
        tmp_path: Path,
    ) -> None:
        """`this` prints the Zen of Python when imported; `os.system` would touch the file."""
        marker = tmp_path / "pwned"
        worker = start_worker(WORKERS_PROCESSES="1")
        system = queue(connection, "maintenance").enqueue("os.system", f"touch {marker}")
        zen = enqueue(connection, "this.s", {}, queue_name="maintenance")
        registry = queue(connection, "maintenance").failed_job_registry
        wait_until(
            lambda: set(registry.get_job_ids()) == {system.id, zen.id},
            timeout_s=60,
            what="both jobs in the failed registry",
        )
        assert not marker.exists()
        assert "Beautiful is better than ugly" not in worker.output()
        for job in (system, zen):
            failed = fetch(connection, job.id)
            assert failed.get_status() == JobStatus.FAILED
            result = failed.latest_result()
            assert result is not None
            assert "not one of our job functions: refused" in (result.exc_string or "")
