"""The pool under SIGKILL of its processes: no job may be lost (issue 18)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus

from servicekit.relay import JobPolicy
from tests.conftest import WorkerProcess, enqueue, live_children, live_group, wait_until

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
    def test_every_job_runs_while_workers_and_the_scheduler_are_killed_again_and_again(
        self, start_worker: Callable[..., WorkerProcess], connection: redis.Redis
    ) -> None:
        pool = started_pool(start_worker, **FAST_MAINTENANCE)
        chance = random.Random(18)
        jobs: list[Job] = []
        kills = 0
        while kills < 30:
            children = sorted(live_children(pool.process.pid))
            if children:
                os.kill(chance.choice(children), signal.SIGKILL)
                kills += 1
            # Jobs pushed right after a kill, while Redis may still see the dead client.
            jobs += push(connection, 5, first=len(jobs))
            time.sleep(chance.uniform(0, 0.5))

        wait_until(
            lambda: not unfinished(connection, jobs),
            timeout_s=300,
            what=f"every one of {len(jobs)} jobs to run",
        )
        assert pool.process.poll() is None
