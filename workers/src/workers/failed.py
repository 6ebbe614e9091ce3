"""Operate the dead-letter queue: `python -m workers.failed list|requeue|purge`.

Jobs land in RQ's FailedJobRegistry after their last retry (or at once for a permanent
error). `list` shows them, `requeue` puts them back on their queue for one more run (the
retries they had are spent: if that run fails, the job comes back here), `purge` deletes
them. `--queue` narrows to one queue, `--job-id` to one job.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from workers.config import get_settings


@dataclass(frozen=True)
class FailedJob:
    queue: str
    job_id: str
    function: str
    failed_at: datetime | None
    error: str


# The line of a traceback that names the exception: `package.module.ErrorClass: message`.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: ")


def summary(exc_string: str) -> str:
    """The last exception's first line, out of a whole traceback."""
    lines = [line for line in exc_string.splitlines() if EXCEPTION_LINE.match(line)]
    return lines[-1] if lines else exc_string.strip().rsplit("\n", 1)[-1]


def rfc3339(moment: datetime) -> str:
    """RQ keeps UTC; older job data may carry it without a timezone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def registries(connection: redis.Redis, queues: Sequence[str]) -> Iterator[FailedJobRegistry]:
    for name in queues:
        yield Queue(name, connection=connection, serializer=JSONSerializer).failed_job_registry


def selected_ids(registry: FailedJobRegistry, job_id: str | None) -> list[str]:
    ids: list[str] = registry.get_job_ids()
    if job_id is None:
        return ids
    return [job_id] if job_id in ids else []


def list_failed(
    connection: redis.Redis, queues: Sequence[str], job_id: str | None = None
) -> list[FailedJob]:
    failed = []
    for registry in registries(connection, queues):
        for one_id in selected_ids(registry, job_id):
            try:
                job = Job.fetch(one_id, connection=connection, serializer=JSONSerializer)
            except NoSuchJobError:
                failed.append(FailedJob(registry.name, one_id, "<expired>", None, ""))
                continue
            result = job.latest_result()
            error = summary(result.exc_string or "") if result is not None else ""
            failed.append(
                FailedJob(
                    queue=registry.name,
                    job_id=one_id,
                    function=job.func_name or "<unknown>",
                    failed_at=job.ended_at,
                    error=error,
                )
            )
    return failed


def requeue_failed(
    connection: redis.Redis, queues: Sequence[str], job_id: str | None = None
) -> list[str]:
    """Ids of the jobs put back on their queues."""
    requeued = []
    for registry in registries(connection, queues):
        for one_id in selected_ids(registry, job_id):
            registry.requeue(one_id)
            requeued.append(one_id)
    return requeued


def purge_failed(
    connection: redis.Redis, queues: Sequence[str], job_id: str | None = None
) -> list[str]:
    """Ids of the jobs deleted, with their data."""
    purged = []
    for registry in registries(connection, queues):
        for one_id in selected_ids(registry, job_id):
            try:
                registry.remove(one_id, delete_job=True)
            except NoSuchJobError:
                registry.remove(one_id)
            purged.append(one_id)
    return purged


def main(argv: Sequence[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m workers.failed", description=__doc__)
    parser.add_argument("command", choices=("list", "requeue", "purge"))
    parser.add_argument("--queue", choices=settings.queues, help="only this queue")
    parser.add_argument("--job-id", help="only this job")
    args = parser.parse_args(argv)
    connection = redis.Redis.from_url(settings.redis_url)
    queues = [args.queue] if args.queue else list(settings.queues)

    if args.command == "list":
        jobs = list_failed(connection, queues, args.job_id)
        for job in jobs:
            failed_at = rfc3339(job.failed_at) if job.failed_at else "-"
            print(f"{job.queue}\t{job.job_id}\t{job.function}\t{failed_at}\t{job.error}")
        print(f"{len(jobs)} failed job(s)", file=sys.stderr)
        return 0
    action = requeue_failed if args.command == "requeue" else purge_failed
    done = action(connection, queues, args.job_id)
    for one_id in done:
        print(one_id)
    verb = "requeued" if args.command == "requeue" else "purged"
    print(f"{len(done)} job(s) {verb}", file=sys.stderr)
    if args.job_id and not done:
        print(f"no failed job {args.job_id}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
