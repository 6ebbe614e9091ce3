"""Jobs per second of each way to run RQ workers: `python -m workers.bench [--redis-url URL]`.

Each setup drains the same number of jobs from its own queue in a child process while the
parent polls the finished-job registry. The rate is the setup's once it runs: the jobs
finished after the first poll that found one finished, over the time from that poll to the
last job finished. Start-up (fork, imports, connections: a second or more, paid once per
deploy) is timed apart, from the child's start to that first poll; counted in the rate, it
made a short run measure start-up more than jobs (1,000 jobs at 1,000 jobs/s take as long
as the start-up of a pool). The first row is RQ's
hello world (plain `Worker`, pickle, a trivial function, default job options) measured in
the same run, so the others read as ratios to it. The other setups run our worker classes
with what production uses: JSON, the relay's job options, metrics, the request-id context.
`devstack.bench` calls `run_worker_bench` for `make bench`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import redis
from rq import Queue, Retry, Worker
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from servicekit.asgi import MULTIPROCESS_ENV

DEFAULT_JOBS = 2000
POLL_S = 0.005
# The job options the outbox relay sets (see the issue 4 contracts).
RELAY_JOB_OPTIONS: dict[str, Any] = {
    "retry": Retry(max=5, interval=[1, 5, 15, 60, 300]),
    "timeout": 30,
    "result_ttl": 3600,
    "failure_ttl": 7 * 24 * 3600,
}


def noop(payload: dict[str, Any]) -> None:
    """The job whose cost is RQ's own."""


def hello(name: str) -> str:
    """RQ's hello-world job."""
    return f"Hello {name}"


@dataclass(frozen=True)
class WorkerBenchRow:
    setup: str
    processes: int
    jobs: int
    # The jobs finished within `seconds`, the time from the first poll that found a job
    # finished to the last job finished.
    timed_jobs: int
    seconds: float
    # From the start of the setup's process to that first poll.
    startup_s: float

    @property
    def jobs_per_s(self) -> float:
        return self.timed_jobs / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Setup:
    name: str
    processes: int
    # Runs in the child process: drain `queue_name` in burst mode, then return.
    run: Callable[[str, str, int], None]
    baseline: bool = False


def _run_hello_world(redis_url: str, queue_name: str, processes: int) -> None:
    connection = redis.Redis.from_url(redis_url)
    Worker([queue_name], connection=connection).work(burst=True, logging_level="WARNING")


def _run_single(worker_class_name: str) -> Callable[[str, str, int], None]:
    def run(redis_url: str, queue_name: str, processes: int) -> None:
        worker_class = _worker_class(worker_class_name)
        connection = redis.Redis.from_url(redis_url)
        worker_class([queue_name], connection=connection).work(burst=True, logging_level="WARNING")

    return run


def _run_pool(worker_class_name: str) -> Callable[[str, str, int], None]:
    def run(redis_url: str, queue_name: str, processes: int) -> None:
        module = _worker_module()
        pool = module.worker_pool(
            redis.Redis.from_url(redis_url),
            [queue_name],
            processes=processes,
            worker_class=getattr(module, worker_class_name),
        )
        pool.start(burst=True, logging_level="WARNING")

    return run


def _worker_module() -> ModuleType:
    # Imported in the child: prometheus_client must see PROMETHEUS_MULTIPROC_DIR first.
    from workers import worker

    return worker


def _worker_class(name: str) -> type[BaseWorker]:
    worker_class: type[BaseWorker] = getattr(_worker_module(), name)
    return worker_class


def hello_world_setup() -> Setup:
    """The baseline: RQ's hello world."""
    return Setup("rq hello world: Worker, pickle, default options", 1, _run_hello_world, True)


def chosen_setup(processes: int) -> Setup:
    """What `python -m workers.worker` runs."""
    return Setup("WorkerPool of SimpleJobWorker", processes, _run_pool("SimpleJobWorker"))


def default_setups(processes: int) -> list[Setup]:
    """RQ's hello world, then each worker class alone and in pools of `processes` and twice
    that (the jobs wait on HTTP, so more processes than cores may pay)."""
    return [
        hello_world_setup(),
        Setup("ForkingJobWorker (fork per job)", 1, _run_single("ForkingJobWorker")),
        Setup("SimpleJobWorker", 1, _run_single("SimpleJobWorker")),
        Setup("WorkerPool of ForkingJobWorker", processes, _run_pool("ForkingJobWorker")),
        chosen_setup(processes),
        chosen_setup(2 * processes),
    ]


def _child(setup: Setup, redis_url: str, queue_name: str, metrics_dir: str) -> None:
    import logging

    os.environ[MULTIPROCESS_ENV] = metrics_dir
    logging.basicConfig(level=logging.WARNING)
    setup.run(redis_url, queue_name, setup.processes)


def measure(
    setup: Setup,
    redis_url: str,
    *,
    jobs: int,
    function: str = "workers.bench.noop",
    payload: Callable[[int], dict[str, Any]] = lambda number: {"number": number},
    timeout_s: float | None = None,
) -> WorkerBenchRow:
    """Enqueue `jobs` jobs, then time one setup draining them (within `timeout_s`, if set)."""
    connection = redis.Redis.from_url(redis_url)
    run_id = uuid.uuid4().hex[:8]
    queue_name = f"bench-{run_id}"
    try:
        if setup.baseline:
            queue = Queue(queue_name, connection=connection)
            datas = [
                Queue.prepare_data(hello, args=("World",), job_id=f"bench-{run_id}-{n}")
                for n in range(jobs)
            ]
        else:
            queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
            datas = [
                Queue.prepare_data(
                    function,
                    args=(payload(n),),
                    job_id=f"bench-{run_id}-{n}",
                    meta={"request_id": f"bench-{run_id}-{n}"},
                    **RELAY_JOB_OPTIONS,
                )
                for n in range(jobs)
            ]
        for start in range(0, jobs, 500):
            queue.enqueue_many(datas[start : start + 500])
        finished_key = queue.finished_job_registry.key
        with tempfile.TemporaryDirectory(prefix="workers-bench-metrics-") as metrics_dir:
            context = multiprocessing.get_context("fork")
            child = context.Process(
                target=_child, args=(setup, redis_url, queue_name, metrics_dir), daemon=False
            )
            started = time.perf_counter()
            first: tuple[float, int] | None = None
            child.start()
            try:
                while (done := int(connection.zcard(finished_key))) < jobs:
                    if first is None and done:
                        first = (time.perf_counter(), done)
                    if not child.is_alive() and int(connection.zcard(finished_key)) < jobs:
                        raise RuntimeError(f"{setup.name} stopped before finishing its jobs")
                    if timeout_s is not None and time.perf_counter() - started > timeout_s:
                        done = int(connection.zcard(finished_key))
                        raise TimeoutError(
                            f"{setup.name} finished {done} of {jobs} jobs in {timeout_s:g} s"
                        )
                    time.sleep(POLL_S)
                ended = time.perf_counter()
            finally:
                # SIGTERM: a pool passes it on as a warm shutdown to its workers.
                if child.is_alive() and int(connection.zcard(finished_key)) < jobs:
                    child.terminate()
                child.join(timeout=30)
        # Every job finished between two polls: all of them are timed, start-up included.
        first_at, first_done = first or (started, 0)
        return WorkerBenchRow(
            setup.name,
            setup.processes,
            jobs,
            jobs - first_done,
            ended - first_at,
            first_at - started,
        )
    finally:
        _delete_keys(connection, run_id)


def _delete_keys(connection: redis.Redis, run_id: str) -> None:
    keys = list(connection.scan_iter(match=f"*bench-{run_id}*", count=1000))
    for start in range(0, len(keys), 500):
        connection.delete(*keys[start : start + 500])


def run_worker_bench(
    redis_url: str,
    *,
    jobs: int = DEFAULT_JOBS,
    processes: int = 2,
    setups: Sequence[Setup] | None = None,
) -> list[WorkerBenchRow]:
    """One row per setup, the RQ hello-world baseline first."""
    return [
        measure(setup, redis_url, jobs=jobs)
        for setup in (setups if setups is not None else default_setups(processes))
    ]


def render(rows: Sequence[WorkerBenchRow]) -> str:
    baseline = rows[0].jobs_per_s if rows else 0.0
    lines = [
        f"{'setup':<50} {'procs':>5} {'jobs':>6} {'jobs/s':>8} {'x baseline':>10}"
        f" {'start-up s':>10}"
    ]
    for row in rows:
        ratio = row.jobs_per_s / baseline if baseline else 0.0
        lines.append(
            f"{row.setup:<50} {row.processes:>5} {row.jobs:>6} "
            f"{row.jobs_per_s:>8.0f} {ratio:>10.2f} {row.startup_s:>10.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6380/0")
    )
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    print(render(run_worker_bench(args.redis_url, jobs=args.jobs, processes=args.processes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
