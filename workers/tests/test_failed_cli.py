"""`python -m workers.failed`: list, requeue and purge the FailedJobRegistry."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import redis
from rq.job import JobStatus

from tests.conftest import enqueue, fetch, queue, reconfigure, work
from workers import failed

NOTIFY = "workers.notifications.order_confirmed"


@pytest.fixture
def failed_jobs(
    connection: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Two notifications and one order job that failed for good (malformed payloads)."""
    reconfigure(monkeypatch, {"REDIS_URL": redis_url})
    ids = [
        enqueue(connection, NOTIFY, {"order": 1}, queue_name="notifications").id,
        enqueue(connection, NOTIFY, {"order": 2}, queue_name="notifications").id,
        enqueue(connection, "workers.stock.cancel_order", {}, queue_name="orders").id,
    ]
    work(connection, "notifications", "orders")
    assert all(fetch(connection, job_id).get_status() == JobStatus.FAILED for job_id in ids)
    return ids


class TestList:
    def test_lists_every_failed_job_with_its_error(
        self, failed_jobs: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert failed.main(["list"]) == 0

        out, err = capsys.readouterr()
        lines = out.splitlines()
        assert sorted(line.split("\t")[1] for line in lines) == sorted(failed_jobs)
        assert all("PermanentJobError: malformed" in line for line in lines)
        assert "3 failed job(s)" in err

    def test_one_queue(self, failed_jobs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        assert failed.main(["list", "--queue", "orders"]) == 0

        [line] = capsys.readouterr().out.splitlines()
        fields = line.split("\t")
        assert fields[:3] == ["orders", failed_jobs[2], "workers.stock.cancel_order"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fields[3])


class TestRequeue:
    def test_requeues_one_job_by_id(
        self,
        failed_jobs: list[str],
        connection: redis.Redis,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert failed.main(["requeue", "--job-id", failed_jobs[0]]) == 0

        assert capsys.readouterr().out.split() == [failed_jobs[0]]
        assert queue(connection, "notifications").job_ids == [failed_jobs[0]]
        assert queue(connection, "notifications").failed_job_registry.count == 1

    def test_an_unknown_job_id_is_an_error(
        self, failed_jobs: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert failed.main(["requeue", "--job-id", "no-such-job"]) == 1

        assert "no failed job no-such-job" in capsys.readouterr().err


class TestPurge:
    def test_purges_a_queue_and_deletes_the_jobs(
        self, failed_jobs: list[str], connection: redis.Redis
    ) -> None:
        assert failed.main(["purge", "--queue", "notifications"]) == 0

        assert queue(connection, "notifications").failed_job_registry.count == 0
        assert queue(connection, "orders").failed_job_registry.count == 1
        assert not connection.exists(f"rq:job:{failed_jobs[0]}")


def test_runs_as_a_module(failed_jobs: list[str], redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.failed", "list", "--queue", "notifications"],
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(result.stdout.splitlines()) == 2
