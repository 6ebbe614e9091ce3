"""The job functions a worker runs; a job naming any other dotted path is refused.

RQ imports and calls whatever dotted path a job's `func_name` (or a callback) names, so
anyone able to write to Redis could make a worker import any module and call any function
in it (`os.system`). Our workers resolve a job's function through `AllowedJob`, which
refuses a name not listed here before importing anything: the job fails at once, without
retries, and lands in the FailedJobRegistry with the reason. A new job function is added
here, in the one list (tests check that every relay route and scheduled job is in it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rq.job import Job

from workers import bench, covers, loans, notifications, reconcile, stock
from workers.errors import PermanentJobError
from workers.periodic import Periodic


def dotted_path(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


# The jobs the workers schedule themselves, each a chain of runs (started by the pool).
PERIODIC: tuple[Periodic, ...] = (loans.LIBRARY_SWEEP, reconcile.RECONCILE)

JOB_FUNCTIONS = frozenset(
    [
        *(
            dotted_path(function)
            for function in (
                stock.place_order,
                stock.cancel_order,
                notifications.order_confirmed,
                notifications.send_notice,
                notifications.send_digest,
                covers.delete_image,
                loans.check_out,
                loans.give_up_borrow,
                loans.pass_on,
                loans.fill_hold,
                loans.hand_to_loan,
                loans.move_due_dates,
                # Does nothing: `python -m workers.bench` and the SIGKILL tests time with it.
                bench.noop,
            )
        ),
        *(periodic.function for periodic in PERIODIC),
    ]
)


class RefusedJob(PermanentJobError):
    """The job names a function (or callback) that is not one of ours."""


class AllowedJob(Job):
    """A job whose function is imported only when it is one of `JOB_FUNCTIONS`; our jobs
    have no callbacks, so a job naming one is refused and no callback is ever imported."""

    @property
    def func(self) -> Any:
        if self.instance is not None or self.func_name not in JOB_FUNCTIONS:
            raise RefusedJob(
                f"job {self.id} names {self.func_name!r}, which is not one of our job"
                " functions: refused without importing it"
            )
        callbacks = [
            name
            for name in (
                self._success_callback_name,
                self._failure_callback_name,
                self._stopped_callback_name,
            )
            if name
        ]
        if callbacks:
            raise RefusedJob(f"job {self.id} names callbacks {callbacks}: refused")
        return super().func

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None
