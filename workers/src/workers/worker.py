"""The RQ worker process: `python -m workers.worker`.

A pool (`workers.pool.QueuePool`) of `WORKERS_PROCESSES` (default 1) `SimpleJobWorker`s on
each queue: each worker process runs its jobs itself instead of forking a work horse per
job. Chosen by measurement (`python -m workers.bench`: jobs/s draining 2000 no-op jobs once
the setup runs, start-up apart, every setup in the same run on this 2-core machine, busy
with another session's benchmarks, load average 6.4 -> 4.3; the hello world ran 62 jobs/s
on a quiet moment):

    rq hello world (Worker, pickle, defaults)   1 process     43 jobs/s    1.00x
    ForkingJobWorker (fork per job)             1 process     23 jobs/s    0.53x
    SimpleJobWorker                             1 process    403 jobs/s    9.32x
    WorkerPool of ForkingJobWorker              2 processes   40 jobs/s    0.93x
    WorkerPool of SimpleJobWorker               2 processes  817 jobs/s   18.90x
    WorkerPool of SimpleJobWorker               4 processes  920 jobs/s   21.28x

(The code before issue 11, right before it in the same conditions: 139 jobs/s for one
SimpleJobWorker, 96 and 169 for pools of 2 and 4, 2.96x and 5.20x its hello world.) What
made the difference, each measured: RQ's loop made 22 Redis round trips per job, 9 now (see
`JobWorker.heartbeat`, `set_state`, `clean_registries`, `SimpleJobWorker.execute_job`);
one heartbeat thread per worker instead of one per job; hiredis parsing the replies. CPU
per no-op job went from 3.2 to 1.6 ms; most of the rest is RQ's 9 round trips.

A fork per job costs more than our jobs do (a few small HTTP calls), and would throw away
each job's HTTP keep-alive connections; what forking buys, isolation from jobs that leak
memory or wedge the interpreter, our jobs do not need: they are short, ours, and bounded by
their `job_timeout` (SIGALRM works in a SimpleWorker's main thread). Two processes match
the two cores; four add little on no-op jobs. The pool restarts a worker that dies. Since
each worker serves one queue (so that no job is lost to a SIGKILL, see workers.pool), the
default pool is four processes, three of them idle most of the time: blocked in BLMOVE.

Shutdown: SIGTERM (or SIGINT) to the pool makes it pass SIGINT to its workers, each of which
finishes its current job and exits (RQ's warm shutdown); a second signal cuts the job short.
Give the pool `job_timeout` + a few seconds to stop (compose `stop_grace_period`).

Abandoned jobs: while a job runs, a thread of its worker renews the job's entry in the
StartedJobRegistry every `WORKERS_HEARTBEAT_TTL_S / 3` (RQ's SimpleWorker alone sets it once,
to `job_timeout + 60` s, so a job whose worker died waited 90 s or more). The entry of a
worker that died (SIGKILL, OOM, lost host) expires within `WORKERS_HEARTBEAT_TTL_S` (5 s),
and the pool's sweep, every `WORKERS_MAINTENANCE_INTERVAL_S` (1 s), retries the job (or
fails it when no retry is left): found within 6 s, run again after the retry's first
interval (1 s for the relays' jobs) (`tests/test_worker_process.py` kills a worker mid-job).

Traces (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set): each worker process installs the SDK
itself, after the fork; a job runs in a consumer span that continues the trace in its meta
(`servicekit.tracing`), so its calls to books and orders join the trace of the request
that caused it.

Metrics: counters in each worker process, summed through PROMETHEUS_MULTIPROC_DIR by the
pool process, which serves them on `WORKERS_METRICS_HOST`:`WORKERS_METRICS_PORT`.

Supervision (`workers.supervision`): every process the pool forks dies with its parent and
holds no copy of the metrics socket, so a pool killed by SIGKILL leaves nothing running and
its restart can bind the port at once.
"""

from __future__ import annotations

import os
import tempfile

# servicekit.asgi imports nothing but the standard library: prometheus_client is not loaded.
from servicekit.asgi import MULTIPROCESS_ENV

# prometheus_client picks its value store when it is first imported, so the worker
# processes share counters only if this is set before anything imports it: here, ahead of
# the imports below, when this module is the program. (Re-executing the program once it
# was set, as `main` does for any other start, doubles the start-up time of a pool.)
if __name__ == "__main__" and not os.environ.get(MULTIPROCESS_ENV):
    os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="workers-metrics-")

import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from asgi_correlation_id import correlation_id
from opentelemetry.trace import SpanKind, Status, StatusCode
from redis.client import Pipeline
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import AbandonedJobError, DeserializationError
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from servicekit import tracing
from servicekit.logs import configure_logging, is_acceptable_request_id
from workers import jobs, metrics, supervision
from workers.config import Settings, get_settings
from workers.errors import PermanentJobError
from workers.jobs import AllowedJob
from workers.pool import QueuePool

logger = logging.getLogger(__name__)

REDIS_RETRY_MAX_S = 10.0
# See `JobWorker.heartbeat`: well under the worker key's TTL (`WORKERS_WORKER_TTL_S` + 60 s).
HEARTBEAT_REPEAT_S = 1.0


class JobQueue(Queue):
    """A queue whose jobs are JSON unless told otherwise. `WorkerPool` builds its workers'
    queues from a class and a name alone; with RQ's `Queue` they would read jobs with
    pickle, and the registry cleanup would see abandoned jobs as unreadable."""

    def __init__(self, name: str = "default", *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("job_class", AllowedJob)
        super().__init__(name, *args, **kwargs)


class JobWorker(BaseWorker):
    """What every worker class here adds to RQ's: JSON jobs, the request id of the job in
    logs and outgoing calls, metrics, no retries for permanent errors, and the settings
    that bound how long an abandoned job waits; only our job functions run (workers.jobs)."""

    queue_class = JobQueue
    job_class = AllowedJob
    # "job ... result is kept for 3600 seconds" after every job: the same for every job of a
    # queue (the relay's job options), so a line per job said nothing.
    log_result_lifespan = False

    def __init__(
        self, queues: str | Queue | Sequence[str] | Sequence[Queue], *args: Any, **kwargs: Any
    ) -> None:
        settings = get_settings()
        kwargs.setdefault("serializer", JSONSerializer)
        # Whoever builds the worker (RQ's WorkerPool passes its own `job_class`, RQ's Job by
        # default), its jobs resolve their functions through the allow-list.
        if not issubclass(kwargs.get("job_class") or Job, AllowedJob):
            kwargs["job_class"] = AllowedJob
        kwargs.setdefault("worker_ttl", settings.worker_ttl_s)
        kwargs.setdefault("maintenance_interval", settings.maintenance_interval_s)
        super().__init__(queues, *args, **kwargs)
        tracing.configure_tracing("workers")
        self.push_exc_handler(_count_abandoned)  # type: ignore[no-untyped-call]
        self.push_exc_handler(_stop_retrying_permanent_errors)  # type: ignore[no-untyped-call]
        # The worker key's TTL and when it was last set (see `heartbeat`).
        self._heartbeat_sent: tuple[int, float] | None = None
        # Whether `rq suspend` was in force when the last job ended; None: not known.
        self._suspended: bool | None = None
        # The running job, whose heartbeat the beater thread renews (see `_beating`).
        self._running: tuple[Job, Execution] | None = None
        self._running_lock = threading.Lock()
        self._beater: threading.Thread | None = None
        self._beater_stop = threading.Event()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long the job's started-registry entry lives unless renewed (see the module)."""
        return get_settings().heartbeat_ttl_s

    def clean_registries(self) -> None:
        """Nothing: the pool sweeps the registries (workers.pool). The time is noted all the
        same: RQ runs a worker's maintenance whenever the last one is older than
        `maintenance_interval`, and without it took the group-registry lock (a round trip)
        twice per job instead of once per interval."""
        self.last_cleaned_at = now()  # type: ignore[assignment]  # RQ types it as None

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's worker heartbeat, in one round trip instead of three, and skipped when the
        same TTL was set less than HEARTBEAT_REPEAT_S ago: RQ's loop beats three times between
        two jobs. Beats into a pipeline are RQ's own (a caller may read their replies)."""
        ttl = timeout or self.worker_ttl + 60
        if pipeline is not None:
            super().heartbeat(ttl, pipeline=pipeline)
        else:
            sent = self._heartbeat_sent
            if (
                sent is not None
                and sent[0] == ttl
                and time.monotonic() - sent[1] < HEARTBEAT_REPEAT_S
            ):
                return
            with self.connection.pipeline() as beat:
                super().heartbeat(ttl, pipeline=beat)
                beat.execute()
        self._heartbeat_sent = (ttl, time.monotonic())

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's, unless the job just ended found the workers not suspended (`execute_job`)."""
        suspended, self._suspended = self._suspended, None
        if suspended is False:
            return
        super().check_for_suspension(burst)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's, without the round trip when the state is already this one: its loop sets
        `idle` after each job and again before taking the next."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        labels = metrics.job_labels(job)
        metrics.JOBS_STARTED.labels(*labels).inc()
        request_id = job_request_id(job)
        token = correlation_id.set(request_id)
        started = time.perf_counter()
        try:
            with (
                tracing.tracer.start_as_current_span(
                    job.func_name or f"process {queue.name}",
                    context=tracing.context_from(job.meta.get(tracing.TRACEPARENT)),
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "rq",
                        "messaging.operation.type": "process",
                        "messaging.destination.name": queue.name,
                        "messaging.message.id": job.id,
                        tracing.REQUEST_ID_ATTRIBUTE: request_id,
                    },
                ) as span,
                self._beating(job, execution),
            ):
                succeeded = super().perform_job(job, queue, execution)
                if not succeeded:
                    span.set_status(Status(StatusCode.ERROR, "job failed"))
                return succeeded
        finally:
            metrics.JOB_DURATION.labels(*labels).observe(time.perf_counter() - started)
            correlation_id.reset(token)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().work(*args, **kwargs)
        finally:
            self._stop_beater()
            tracing.flush()

    @contextmanager
    def _beating(self, job: Job, execution: Execution) -> Iterator[None]:
        """Have the beater thread renew the job's heartbeat while the job runs in this one,
        at least every `heartbeat_ttl / 3`. One thread for the worker's life: a thread
        started and joined per job cost more than a no-op job."""
        self._start_beater()
        with self._running_lock:
            self._running = (job, execution)
        try:
            yield
        finally:
            # Waits for a renewal in flight, so that none lands after the job has ended.
            with self._running_lock:
                self._running = None

    def _start_beater(self) -> None:
        if self._beater is not None and self._beater.is_alive():
            return
        self._beater_stop.clear()
        self._beater = threading.Thread(target=self._beat, name="job heartbeat", daemon=True)
        self._beater.start()

    def _stop_beater(self) -> None:
        if self._beater is not None:
            self._beater_stop.set()
            self._beater.join()
            self._beater = None

    def _beat(self) -> None:
        interval = get_settings().heartbeat_ttl_s / 3
        while not self._beater_stop.wait(interval):
            with self._running_lock:
                if self._running is None:
                    continue
                job, execution = self._running
                try:
                    self.maintain_heartbeats(job, execution)
                except redis.RedisError as exc:
                    logger.warning("could not renew the heartbeat of job %s: %s", job.id, exc)

    def handle_job_success(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry,
        execution: Execution,
    ) -> None:
        super().handle_job_success(job, queue, started_job_registry, execution)
        metrics.JOBS_SUCCEEDED.labels(*metrics.job_labels(job)).inc()

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """RQ logs every failure at ERROR with its traceback, retried or not, so a service
        down for a minute wrote a screenful per job. Here a failure that will be retried is
        one warning line; the traceback is logged once, when the job fails for good. The
        exception handlers run first: they decide whether a retry is left."""
        call_exception_handlers(self._exc_handlers, job, *exc_info)
        exc_type, exc_value, _ = exc_info
        error = f"{exc_type.__name__ if exc_type else 'error'}: {exc_value}"
        try:
            function = job.func_name
        except DeserializationError:
            function = "<unreadable>"
        if self._will_retry(job):
            logger.warning(
                "job %s (%s) failed, retry in %s s (%s left): %s",
                job.id,
                function,
                job.get_retry_interval(),
                job.retries_left,
                error,
            )
        else:
            logger.error(
                "job %s (%s) failed, no retry left: %s", job.id, function, error, exc_info=exc_info
            )

    def _will_retry(self, job: Job) -> bool:
        """The test RQ makes in `handle_job_failure`, before it spends one of the retries."""
        return job.should_retry and self._stopped_job_id != job.id

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        retried = self._will_retry(job)
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        counter = metrics.JOBS_RETRIED if retried else metrics.JOBS_FAILED
        counter.labels(*metrics.job_labels(job)).inc()


class SimpleJobWorker(JobWorker, SimpleWorker):
    """Runs each job in the worker process itself."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        """SimpleWorker's, with what RQ's loop sends next (the worker back to idle, its
        heartbeat, the check for `rq suspend`) in one round trip instead of three."""
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        with self.connection.pipeline() as pipeline:
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            self.heartbeat(pipeline=pipeline)
            pipeline.exists(WORKERS_SUSPENDED)
            self._suspended = bool(pipeline.execute()[-1])


class ForkingJobWorker(JobWorker, Worker):
    """Forks a work horse per job."""


def job_request_id(job: Job) -> str:
    """The request that caused the job (from the outbox row), or a fresh id to follow it by."""
    request_id = job.meta.get("request_id")
    if isinstance(request_id, str) and is_acceptable_request_id(request_id):
        return request_id
    return uuid.uuid4().hex


def _stop_retrying_permanent_errors(
    job: Job,
    exc_type: type[BaseException] | None,
    exc_value: BaseException | None,
    traceback: TracebackType | None,
) -> bool:
    if isinstance(exc_value, PermanentJobError):
        job.retries_left = 0
    return True


def _count_abandoned(
    job: Job,
    exc_type: type[BaseException] | None,
    exc_value: BaseException | None,
    traceback: TracebackType | None,
) -> bool:
    if exc_type is AbandonedJobError:
        logger.warning("job %s was abandoned by a dead worker", job.id)
        metrics.JOBS_ABANDONED.labels(*metrics.job_labels(job)).inc()
    return True


def worker_pool(
    connection: redis.Redis,
    queues: Sequence[str],
    *,
    processes: int,
    worker_class: type[JobWorker] = SimpleJobWorker,
) -> QueuePool:
    """`processes` workers on each of `queues`, and the scheduler (see workers.pool)."""
    return QueuePool(
        queues,
        connection,
        processes_per_queue=processes,
        sweep_interval_s=get_settings().maintenance_interval_s,
        exception_handlers=[_count_abandoned],
        worker_class=worker_class,
        serializer=JSONSerializer,
        queue_class=JobQueue,
    )


def wait_for_redis(connection: redis.Redis) -> None:
    """Block until Redis answers, backing off up to REDIS_RETRY_MAX_S between tries."""
    delay = 0.5
    while True:
        try:
            connection.ping()
            return
        except redis.ConnectionError as exc:
            logger.warning("Redis is not reachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, REDIS_RETRY_MAX_S)


def is_not_routine(record: logging.LogRecord) -> bool:
    """RQ logs at INFO, with no setting to quiet them, lines that bury the jobs' own: each
    registry cleanup (one line per queue every maintenance interval: 10 lines every 15 s
    for two workers) and a "Job OK" after each job, right after "Successfully completed
    <job> in <seconds>", which says the same and how long it took. Dropped by message."""
    if str(record.msg).startswith("Worker %s: cleaning "):
        return False
    # 'Worker %s: %s: %s (%s)' with (worker, queue, "Job OK" in colour or not, job id); the
    # line that starts a job has the same format, with the job's description.
    args = record.args if isinstance(record.args, tuple) else ()
    return not (
        record.msg == "Worker %s: %s: %s (%s)" and len(args) == 4 and "Job OK" in str(args[2])
    )


def main(settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    configure_logging("workers", settings.log_level)
    logging.getLogger("rq.worker").addFilter(is_not_routine)
    if settings.service_key is None:
        logger.error("SERVICE_KEY is not set: the books and orders internal APIs would refuse")
        return 2
    if not os.environ.get(MULTIPROCESS_ENV):
        # Started some other way than `python -m workers.worker` (see the top of the module).
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="workers-metrics-")
        os.execv(sys.executable, [sys.executable, "-m", "workers.worker"])  # noqa: S606
    # Files of processes from an earlier run would add their counts to this one's.
    for stale in Path(os.environ[MULTIPROCESS_ENV]).glob("*.db"):
        stale.unlink()
    connection = redis.Redis.from_url(settings.redis_url)
    wait_for_redis(connection)
    for periodic in jobs.PERIODIC:
        periodic.start_chain(connection)
    supervision.supervise_forks()
    if settings.metrics_port:
        listening = metrics.serve_metrics(
            settings.metrics_host, settings.metrics_port, connection, settings.queues
        )
        supervision.close_in_children(listening)
    pool = worker_pool(connection, settings.queues, processes=settings.processes)
    # Returns once every worker has finished its job after SIGTERM/SIGINT (warm shutdown).
    pool.start(burst=False, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
