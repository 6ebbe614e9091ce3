"""Putting back in their queue the jobs that no list, registry or worker holds any more.

RQ moves a job between its lists and registries atomically (enqueue, take, start, finish,
retry are each one transaction), so a job in none of them is one that a process died with:
- taken: in the queue's intermediate list, a worker took it (`BLMOVE`) and died before it
  could start it (RQ's own cleanup of that list waits a minute; this one `TAKEN_GRACE_S`);
- lost: its hash says queued or started, but it is in no queue, intermediate list or
  started registry; with every worker on one queue this should not happen any more (it did
  when Redis handed a job to the `BLPOP` of a dead worker), and if it does, it does not
  stay so.
Each is seen twice, `grace` apart, before it is put back, so a job caught between two
steps of a live worker is left alone; one put back twice would run twice, which every job
is written to survive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

import redis
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.queue import Queue

from workers import metrics

logger = logging.getLogger(__name__)

# A worker moves a job from the intermediate list to the started registry a few milliseconds
# after it took it; one still there after this long belongs to a worker that died.
TAKEN_GRACE_S = 10
LOST_GRACE_S = 10
REASONS = ("taken", "lost")
SEEN_KEY = "workers:sweep:seen:{}:{}"
# RQ's job ids are letters, digits, `-` and `_`: `rq:job:<id>` has no other colon, unlike
# the keys RQ keeps beside a job (`rq:job:<id>:dependents`).
JOB_KEY_PREFIX = Job.redis_job_namespace_prefix


def _seen_long_enough(connection: redis.Redis, kind: str, job_id: str, grace_s: float) -> bool:
    """Notes the first time a job is seen in a `kind` of trouble; True once `grace_s` later."""
    key = SEEN_KEY.format(kind, job_id)
    if connection.set(key, time.time(), nx=True, ex=int(grace_s * 10)):
        return False
    first_seen = connection.get(key)
    return first_seen is not None and time.time() - float(first_seen) >= grace_s


def _put_back(connection: redis.Redis, queue: Queue, job_id: str, kind: str) -> None:
    with connection.pipeline() as pipeline:
        pipeline.lrem(queue.intermediate_queue_key, 0, job_id)
        queue.push_job_id(job_id, pipeline=pipeline, at_front=True)
        pipeline.delete(SEEN_KEY.format(kind, job_id))
        pipeline.execute()
    logger.warning("job %s is in no list of %s (%s): put back at its front", job_id, queue, kind)
    metrics.JOBS_REDRIVEN.labels(queue.name, kind).inc()


def put_back_taken_jobs(connection: redis.Redis, queue: Queue) -> None:
    """Jobs in the queue's intermediate list that no worker started."""
    for job_id in IntermediateQueue(queue.key, connection).get_job_ids():
        if job_id in queue.started_job_registry:
            continue
        if not _seen_long_enough(connection, "taken", job_id, TAKEN_GRACE_S):
            continue
        if queue.fetch_job(job_id) is None:  # expired or deleted meanwhile
            connection.lrem(queue.intermediate_queue_key, 0, job_id)
            continue
        _put_back(connection, queue, job_id, "taken")


def _job_ids(connection: redis.Redis) -> Iterator[str]:
    for key in connection.scan_iter(match=f"{JOB_KEY_PREFIX}*", count=1000):
        job_id = key.decode()[len(JOB_KEY_PREFIX) :]
        if ":" not in job_id:
            yield job_id


def unheld_jobs(connection: redis.Redis, queues: Sequence[Queue]) -> Iterator[tuple[Queue, str]]:
    """Jobs of `queues` whose hash says queued or started that nothing holds right now.

    A scan of every job key: run it every few seconds, not every tick. What holds a job is
    read once per queue, after the hashes, and only a job that none of it held is checked
    again on its own: checked one by one (an `LPOS` down the queue each), a backlog of
    10,000 jobs took 4.5 s of the pool and of Redis every 5 s, when the workers needed them."""
    by_name = {queue.name: queue for queue in queues}
    job_ids = list(_job_ids(connection))
    with connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.hmget(JOB_KEY_PREFIX + job_id, "status", "origin")
        fields = pipeline.execute()
    held = {queue.name: _held_job_ids(connection, queue) for queue in queues}
    for job_id, (raw_status, raw_origin) in zip(job_ids, fields, strict=True):
        if raw_status is None or raw_origin is None:
            continue
        status, queue = raw_status.decode(), by_name.get(raw_origin.decode())
        if queue is None or status not in (JobStatus.QUEUED, JobStatus.STARTED):
            continue
        # A job between two lists when they were read is in neither: ask again, now.
        if job_id not in held[queue.name] and not _is_held(connection, queue, job_id):
            yield queue, job_id


def put_back_lost_jobs(connection: redis.Redis, queues: Sequence[Queue]) -> None:
    """Jobs that nothing has held for `LOST_GRACE_S`."""
    for queue, job_id in unheld_jobs(connection, queues):
        if _seen_long_enough(connection, "lost", job_id, LOST_GRACE_S) and not _is_held(
            connection, queue, job_id
        ):
            _put_back(connection, queue, job_id, "lost")


def _held_job_ids(connection: redis.Redis, queue: Queue) -> set[str]:
    """The jobs in the queue, its intermediate list and its started registry."""
    return {
        *queue.get_job_ids(),
        *IntermediateQueue(queue.key, connection).get_job_ids(),
        *queue.started_job_registry.get_job_ids(cleanup=False),
    }


def _is_held(connection: redis.Redis, queue: Queue, job_id: str) -> bool:
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.lpos(queue.key, job_id)
        pipeline.lpos(queue.intermediate_queue_key, job_id)
        listed = any(found is not None for found in pipeline.execute())
    # Entries of the started registry are `job id:execution id`; RQ's `in` reads them.
    return listed or job_id in queue.started_job_registry
