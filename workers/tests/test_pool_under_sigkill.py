"""The pool under SIGKILL of its processes: no job may be lost (issue 18)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from devstack.servers import EmbeddedValkey, free_port
from servicekit.relay import JobPolicy
from tests.conftest import (
    WorkerProcess,
    enqueue,
    fetch,
    live_children,
    live_group,
    queue,
    wait_until,
)

NOOP = "workers.bench.noop"
# An abandoned job's started-registry entry expires this long after it started, plus 60 s.
POLICY = JobPolicy(timeout_s=5)
# Registry cleanups every second, and idle workers wake up every second to run them.
FAST_MAINTENANCE = {"WORKERS_MAINTENANCE_INTERVAL_S": "1", "WORKERS_WORKER_TTL_S": "16"}


def sockets(pid: int) -> set[str]:
    """The socket inodes a process holds ("socket:[123]")."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:"):
            held.add(target)
    return held


def started_pool(start_worker: Callable[..., WorkerProcess], **env: str) -> WorkerProcess:
    """A pool with one worker on each of the four queues and its scheduler, all started."""
    pool = start_worker(WORKERS_PROCESSES="1", **env)
    wait_until(
        lambda: len(live_group(pool.process.pid)) == 6,
        timeout_s=60,
        what="the pool, four workers and the scheduler",
    )
    return pool


def redriven(port: int, queue_name: str, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "workers_jobs_redriven_total"
        and sample.labels == {"queue": queue_name, "reason": reason}
    )


def push(connection: redis.Redis, count: int, *, first: int) -> list[Job]:
    return [
        enqueue(
            connection,
            NOOP,
            {"number": number},
            queue_name=("orders", "notifications")[number % 2],
            policy=POLICY,
        )
        for number in range(first, first + count)
    ]


def unfinished(connection: redis.Redis, jobs: list[Job]) -> list[str]:
    statuses = [job.get_status(refresh=True) for job in jobs]
    return [
        job.id for job, status in zip(jobs, statuses, strict=True) if status != JobStatus.FINISHED
    ]


class TestScheduler:
    @pytest.mark.timeout(120)
    def test_holds_no_connection_of_a_worker(
        self, start_worker: Callable[..., WorkerProcess]
    ) -> None:
        """Forked from a worker, the scheduler kept the worker's socket blocked in BLPOP
        open after the worker was killed, and Redis handed it the next job."""
        pool = started_pool(start_worker)
        pool_sockets = sockets(pool.process.pid)
        children = live_group(pool.process.pid) - {pool.process.pid}

        # Sockets a process opened itself (not inherited from the pool) are its alone.
        own = {pid: sockets(pid) - pool_sockets for pid in children}
        for pid in children:
            for other in children - {pid}:
                assert not own[pid] & own[other], (pid, other)
        assert live_children(pool.process.pid) == children


class TestAtLeastOnce:
    @pytest.mark.timeout(400)
    def test_every_job_runs_while_workers_the_scheduler_and_the_pool_are_killed(
        self, start_worker: Callable[..., WorkerProcess], connection: redis.Redis
    ) -> None:
        pools = [started_pool(start_worker, **FAST_MAINTENANCE)]
        chance = random.Random(18)
        jobs: list[Job] = []
        for kill in range(1, 41):
            pool = pools[-1]
            if kill % 10 == 0:
                # The pool itself: its children die with it, a new one takes over.
                pool.process.send_signal(signal.SIGKILL)
                pool.process.wait()
                pools.append(start_worker(WORKERS_PROCESSES="1", **FAST_MAINTENANCE))
            elif children := sorted(live_children(pool.process.pid)):
                # A worker or the scheduler.
                os.kill(chance.choice(children), signal.SIGKILL)
            # Jobs pushed right after a kill, while Redis may still see the dead client.
            jobs += push(connection, 5, first=len(jobs))
            time.sleep(chance.uniform(0, 0.5))

        wait_until(
            lambda: not unfinished(connection, jobs),
            timeout_s=300,
            what=f"every one of {len(jobs)} jobs to run",
        )
        assert pools[-1].process.poll() is None
        assert not any(live_group(pool.process.pid) for pool in pools[:-1])


class TestRedisRestart:
    @pytest.mark.timeout(120)
    def test_the_scheduler_runs_a_due_retry_soon_after_redis_comes_back(
        self, start_worker: Callable[..., WorkerProcess], tmp_path: Path
    ) -> None:
        """RQ's scheduler dies with its connection; the pool starts it again, and it takes
        back its own lock (persisted by Redis) instead of waiting out the lock's minute."""
        valkey = EmbeddedValkey(tmp_path / "valkey", free_port())
        with valkey:
            connection = redis.Redis.from_url(valkey.url)
            started_pool(start_worker, REDIS_URL=valkey.url)
            wait_until(
                lambda: bool(connection.exists("rq:scheduler-lock:orders")),
                timeout_s=30,
                what="the scheduler to take its lock",
            )
            valkey.stop()
            valkey.start()

            job = queue(connection).enqueue_in(timedelta(seconds=1), NOOP, {"number": 1})
            # The scheduler is restarted within a second or two, then moves the job on.
            wait_until(
                lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
                timeout_s=20,
                what="the scheduler to enqueue the due job",
            )
            connection.close()


class QuitOnRelease:
    """An SMTP server that keeps what it receives and answers QUIT only when released: the
    sender has been told its mail was accepted, and waits."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.quitting = threading.Event()
        self.released = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope.original_content or b"")
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quitting.set()
        await asyncio.to_thread(self.released.wait)
        return "221 Bye"


def recorded_notice(orders_database_url: str) -> int:
    """A notice as orders' sweep records it (the job reports its delivery to orders)."""
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
        row = conn.execute(
            """
            WITH member AS (
                INSERT INTO members (name, email, status)
                VALUES ('Anne', 'anne@example.org', 'active') RETURNING id
            )
            INSERT INTO notices (kind, subject_id, member_id, day, deadline)
            SELECT 'overdue_1', 1, id, current_date, now() FROM member RETURNING id
            """
        ).fetchone()
    assert row is not None
    return int(row[0])


class TestMailOnce:
    @pytest.mark.timeout(120)
    def test_a_notice_whose_worker_was_killed_after_the_send_is_not_mailed_again(
        self,
        start_worker: Callable[..., WorkerProcess],
        connection: redis.Redis,
        orders_database_url: str,
    ) -> None:
        server = QuitOnRelease()
        controller = Controller(server, hostname="127.0.0.1", port=free_port())
        controller.start()
        try:
            started_pool(
                start_worker,
                SMTP_URL=f"smtp://127.0.0.1:{controller.port}",
                WORKERS_SMTP_TIMEOUT_S="60",
            )
            job = enqueue(
                connection,
                "workers.notifications.send_notice",
                {
                    "notice_id": recorded_notice(orders_database_url),
                    "kind": "overdue_1",
                    "member_id": 1,
                    "email": "anne@example.org",
                    "name": "Anne",
                    "book_id": 1,
                    "book_title": "Persuasion",
                    "deadline": "2026-12-01T00:00:00Z",
                },
                queue_name="notifications",
            )
            assert server.quitting.wait(timeout=30), "the worker never sent the mail"
            worker_name = fetch(connection, job.id).worker_name
            worker = Worker.find_by_key(
                Worker.redis_worker_namespace_prefix + worker_name,
                connection=connection,
                serializer=JSONSerializer,
            )
            assert worker is not None
            os.kill(worker.pid, signal.SIGKILL)
            server.released.set()

            # The pool finds the job abandoned and runs it again.
            wait_until(
                lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
                timeout_s=60,
                what="the notice job to run again",
            )
            assert fetch(connection, job.id).return_value() == "already sent"
            assert len(server.messages) == 1
            # The run that mailed died before it reported; the run after it did.
            with psycopg.connect(orders_database_url) as conn:
                assert conn.execute("SELECT status, attempts FROM notices").fetchall() == [
                    ("sent", 2)
                ]
        finally:
            server.released.set()
            controller.stop()


class TestSweep:
    """Jobs that no list holds, as a process that died with them leaves them."""

    @pytest.mark.timeout(120)
    def test_a_job_taken_by_a_worker_that_died_before_starting_it_runs(
        self, start_worker: Callable[..., WorkerProcess], connection: redis.Redis
    ) -> None:
        # Taken as RQ's worker takes it, into the intermediate list, by nobody that lives.
        [job] = push(connection, 1, first=0)
        orders = queue(connection)
        assert connection.lmove(orders.key, orders.intermediate_queue_key) == job.id.encode()
        port = free_port()
        started_pool(start_worker, WORKERS_METRICS_PORT=str(port))

        wait_until(
            lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
            timeout_s=60,
            what="the taken job to run",
        )
        assert redriven(port, "orders", "taken") == 1

    @pytest.mark.timeout(120)
    def test_a_queued_job_in_no_list_runs(
        self, start_worker: Callable[..., WorkerProcess], connection: redis.Redis
    ) -> None:
        """The state of issue 18's lost jobs: Redis handed them to a dead worker's BLPOP."""
        [job] = push(connection, 1, first=0)
        orders = queue(connection)
        assert connection.lrem(orders.key, 0, job.id) == 1
        port = free_port()
        started_pool(start_worker, WORKERS_METRICS_PORT=str(port))

        wait_until(
            lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
            timeout_s=60,
            what="the lost job to run",
        )
        assert redriven(port, "orders", "lost") == 1
