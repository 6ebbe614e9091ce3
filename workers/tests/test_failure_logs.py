"""A failure that will be retried is one warning line; the traceback comes once, at the end."""

from __future__ import annotations

import logging

import pytest
import redis

from servicekit.relay import JobPolicy
from tests.conftest import enqueue, work

CANCEL = "workers.stock.cancel_order"


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name.startswith(("rq", "workers"))
    ]


class TestFailureLogs:
    @pytest.mark.usefixtures("books_down")
    def test_each_retry_is_one_warning_line_and_the_last_failure_has_the_traceback(
        self, connection: redis.Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        job = enqueue(
            connection, CANCEL, {"order_id": 1}, policy=JobPolicy(retry_intervals_s=(0, 0))
        )

        work(connection, "orders")

        records = failure_records(caplog)
        assert [(r.name, r.levelname, r.exc_info is None) for r in records] == [
            ("workers.worker", "WARNING", True),
            ("workers.worker", "WARNING", True),
            ("workers.worker", "ERROR", False),
        ]
        first, second, last = (record.getMessage() for record in records)
        assert first.startswith(f"job {job.id} ({CANCEL}) failed, retry in 0 s (2 left): ")
        assert "ServiceUnavailable" in first
        assert "\n" not in first + second
        assert second.startswith(f"job {job.id} ({CANCEL}) failed, retry in 0 s (1 left): ")
        assert last.startswith(f"job {job.id} ({CANCEL}) failed, no retry left: ")
        assert "Traceback" in caplog.text

    def test_a_permanent_error_logs_its_traceback_once(
        self, connection: redis.Redis, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        job = enqueue(connection, CANCEL, {"order": 1})

        work(connection, "orders")

        records = failure_records(caplog)
        assert [(r.levelname, r.exc_info is None) for r in records] == [("ERROR", False)]
        assert records[0].getMessage().startswith(f"job {job.id} ({CANCEL}) failed, no retry left")
