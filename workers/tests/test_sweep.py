"""Which jobs the pool's sweep finds held by nothing (workers.sweep)."""

from __future__ import annotations

import redis

from tests.conftest import enqueue, queue
from workers import sweep

NOOP = "workers.bench.noop"


class TestUnheldJobs:
    def test_only_the_queued_job_in_no_list_is_unheld(self, connection: redis.Redis) -> None:
        waiting, taken, lost = (enqueue(connection, NOOP, {"number": n}) for n in range(3))
        orders = queue(connection)
        # Taken by a worker: moved into the intermediate list, as BLMOVE does.
        connection.lrem(orders.key, 0, taken.id)
        connection.rpush(orders.intermediate_queue_key, taken.id)
        connection.lrem(orders.key, 0, lost.id)

        unheld = [(found.name, job_id) for found, job_id in sweep.unheld_jobs(connection, [orders])]

        assert unheld == [("orders", lost.id)]
        assert waiting.id in orders.get_job_ids()

    def test_jobs_of_other_queues_are_left_to_their_pool(self, connection: redis.Redis) -> None:
        lost = enqueue(connection, NOOP, {"number": 1}, queue_name="notifications")
        connection.lrem(queue(connection, "notifications").key, 0, lost.id)

        assert list(sweep.unheld_jobs(connection, [queue(connection)])) == []
