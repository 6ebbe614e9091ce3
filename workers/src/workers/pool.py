"""The pool process: one worker process per queue (or several), and the scheduler beside them.

Why one queue per worker: RQ takes a job at least once only from a worker that listens on a
single queue. Such a worker takes it with `BLMOVE queue -> queue:intermediate`, and the job
leaves the intermediate list in the same transaction that puts it in the StartedJobRegistry;
a worker SIGKILLed at any instant leaves the job in one of them, from where the pool's
sweep puts it back. A worker on several queues takes jobs with `BLPOP`: a job
that Redis hands to a client that has just died (its socket not closed yet, or still open in
a process that inherited it) is in no list at all, and nothing ever runs it.

Maintenance is the pool's too (`sweep`, every `WORKERS_MAINTENANCE_INTERVAL_S`): RQ's
registry cleanups (a job whose worker stopped beating its heartbeat is retried, see
`workers.worker.JobWorker`), and the jobs that no list holds any more put back in their
queue (`workers.sweep`). The workers do none of it: a worker killed while it holds a
queue's cleanup lock (RQ's own cleanup) would keep the lock 15 minutes; the pool's lives
seconds.

Why the scheduler is the pool's child and not a worker's (RQ's default): forked from a
worker, it inherits the worker's connection blocked in `BLPOP`/`BLMOVE`; when the worker is
killed, Redis keeps handing jobs to that socket. Forked here it inherits no blocked socket,
the pool restarts it within a second when it dies (a Redis restart ends it), and it dies
with the pool (`workers.supervision`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import redis
from redis import ConnectionPool
from rq.exceptions import SchedulerNotFound
from rq.registry import clean_registries
from rq.scheduler import RQScheduler
from rq.scripts import release_lock
from rq.serializers import JSONSerializer
from rq.utils import as_text
from rq.worker_pool import ForkProcess, WorkerPool
from rq.worker_registration import clean_worker_registry

from workers import metrics, sweep

logger = logging.getLogger(__name__)

# The scan for lost jobs reads every job's hash: every few seconds, not every tick.
LOST_SWEEP_INTERVAL_S = 5
LOST_SWEEP_LOCK = "workers:sweep:lost-lock"
# The sweep holds a queue's cleanup lock (or the lost-job scan's) this long at most, should
# the pool die in it: a sweep takes milliseconds, a scan of every job a fraction of a second.
SWEEP_LOCK_TTL_S = 5
LOST_SWEEP_LOCK_TTL_S = 10


class QueuePool(WorkerPool):
    """RQ's WorkerPool with `processes_per_queue` workers on each queue, and the scheduler."""

    def __init__(
        self,
        queues: Sequence[str],
        connection: redis.Redis,
        *,
        processes_per_queue: int,
        sweep_interval_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            queues, connection, num_workers=len(queues) * processes_per_queue, **kwargs
        )
        self.queue_of: dict[str, str] = {}
        self.scheduler = RQScheduler(queues, connection=connection, serializer=JSONSerializer)
        self.sweep_interval_s = sweep_interval_s
        self.swept_at = 0.0
        self.lost_swept_at = 0.0
        # Every series from 0, so that the first put-back is an increase.
        for queue in queues:
            for reason in sweep.REASONS:
                metrics.JOBS_REDRIVEN.labels(queue, reason)

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> BaseProcess:
        """A worker for the queue that has the fewest. RQ's own version gives every worker
        all the queues, and its workers start a scheduler of their own."""
        served = Counter(self.queue_of.values())
        queue = min(self._queue_names, key=lambda name: served[name])
        self.queue_of[name] = queue
        return ForkProcess(
            target=self.run_worker,
            args=(name, queue, burst, logging_level),
            name=f"Worker {name} on {queue} (WorkerPool {self.name})",
        )

    def run_worker(self, name: str, queue: str, burst: bool, logging_level: str) -> None:
        connection = self._connection_class(
            connection_pool=ConnectionPool(connection_class=self._pool_class, **self._pool_kwargs)
        )
        worker = self.worker_class(
            [self.queue_class(queue, connection=connection)],
            name=name,
            connection=connection,
            serializer=self.serializer,
            job_class=self.job_class,
            queue_class=self.queue_class,
        )
        worker.work(burst=burst, with_scheduler=False, logging_level=logging_level)

    def handle_dead_worker(self, worker_data: Any) -> None:
        super().handle_dead_worker(worker_data)
        self.queue_of.pop(worker_data.name, None)

    def check_workers(self, respawn: bool = True) -> None:
        super().check_workers(respawn)
        if respawn and self.status != self.Status.STOPPED:
            self.keep_scheduler()
            if time.monotonic() - self.swept_at >= self.sweep_interval_s:
                try:
                    self.sweep()
                except redis.RedisError as exc:
                    logger.warning("cannot sweep the queues yet: %s", exc)
                self.swept_at = time.monotonic()

    def sweep(self) -> None:
        for queue in self.queues:
            if not self.connection.set(
                queue.registry_cleaning_key, 1, nx=True, ex=SWEEP_LOCK_TTL_S
            ):
                continue
            try:
                clean_registries(queue, self.exception_handlers)
                clean_worker_registry(queue)
                sweep.put_back_taken_jobs(self.connection, queue)
            finally:
                queue.release_maintenance_lock()  # type: ignore[no-untyped-call]
        if time.monotonic() - self.lost_swept_at >= LOST_SWEEP_INTERVAL_S and self.connection.set(
            LOST_SWEEP_LOCK, 1, nx=True, ex=LOST_SWEEP_LOCK_TTL_S
        ):
            try:
                sweep.put_back_lost_jobs(self.connection, self.queues)
            finally:
                self.connection.delete(LOST_SWEEP_LOCK)
            self.lost_swept_at = time.monotonic()

    def keep_scheduler(self) -> None:
        """Start the scheduler unless it runs, or another pool's holds the queues' locks.
        The locks carry the scheduler's name, which does not change across its restarts:
        after a Redis restart it takes back its own locks at once instead of waiting out
        their TTL."""
        process = self.scheduler._process
        if process is not None and process.is_alive():
            return
        try:
            self.release_locks_of_dead_schedulers()
            self.scheduler.acquire_locks(auto_start=True)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            logger.warning("cannot start the scheduler yet: %s", exc)

    def release_locks_of_dead_schedulers(self) -> None:
        """Release the queues' scheduler locks held by a scheduler that ran on this host in
        a process that is gone (its pool was SIGKILLed, and it with it): the lock would keep
        every scheduler away for its TTL, a minute, and retries would wait as long."""
        hostname = socket.gethostname()
        for queue_name in self._queue_names:
            key = RQScheduler.get_locking_key(queue_name)
            holder = self.connection.get(key)
            if holder is None or as_text(holder) == self.scheduler.name:
                continue
            try:
                other = RQScheduler.fetch(as_text(holder), self.connection)
            except SchedulerNotFound:
                continue
            if other.hostname == hostname and not is_running(other.pid):
                logger.warning("releasing %s of scheduler %s, dead", key, other.name)
                release_lock(self.connection, key, other.name)

    def stop_workers(self) -> None:
        super().stop_workers()  # type: ignore[no-untyped-call]
        process = self.scheduler._process
        if process is not None and process.pid is not None:
            # The scheduler releases its locks on SIGTERM, so another pool can take over.
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)

    def all_workers_have_stopped(self) -> bool:
        process = self.scheduler._process
        scheduler_stopped = process is None or not process.is_alive()
        return super().all_workers_have_stopped() and scheduler_stopped


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie waiting to be reaped, which a container's
    init may never do). Read from /proc: `os.kill(pid, 0)` succeeds on zombies."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
