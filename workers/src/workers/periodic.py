"""Jobs that run every N seconds: a chain of scheduled RQ jobs, one per time slot.

Each run first schedules the run of the next slot, so the chain survives a run that
fails. A run's job id is its slot (`<name>-<slot>`): every worker that starts the chain
and every run that extends it end up with one job per slot, never two chains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

QUEUE = "maintenance"


@dataclass(frozen=True)
class Periodic:
    name: str
    function: str
    interval_s: Callable[[], int]
    timeout_s: int
    # Retries of a failed run; none where the next slot's run is soon enough.
    retries_s: Sequence[int] = ()

    def current_slot(self) -> int:
        return int(time.time() // self.interval_s())

    def schedule(self, connection: Redis, *, at_slot: int | None = None) -> Job | None:
        """Put the run of slot `at_slot` (default: now, at once) on the queue, unless it is
        there already."""
        slot = self.current_slot() if at_slot is None else at_slot
        job_id = f"{self.name}-{slot}"
        if Job.exists(job_id, connection=connection):
            return None
        queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
        options: dict[str, Any] = {
            "job_id": job_id,
            "job_timeout": self.timeout_s,
            "result_ttl": 3 * self.interval_s(),
            "failure_ttl": 7 * 24 * 3600,
        }
        if self.retries_s:
            options["retry"] = Retry(max=len(self.retries_s), interval=list(self.retries_s))
        if at_slot is None:
            return queue.enqueue(self.function, {}, **options)
        start = datetime.fromtimestamp(slot * self.interval_s(), UTC)
        scheduled: Job = queue.enqueue_at(start, self.function, {}, **options)
        return scheduled

    def start_chain(self, connection: Redis) -> None:
        """From the next slot (when the services are up), unless a chain is going."""
        self.schedule(connection, at_slot=self.current_slot() + 1)

    def schedule_next(self) -> None:
        """Called by a run: the chain goes on whatever this run does."""
        job = get_current_job()
        if job is not None:
            self.start_chain(job.connection)
