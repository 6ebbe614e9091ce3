"""How a job tells the worker whether trying again could help.

Any exception retries the job (RQ's `Retry` with growing intervals, set at enqueue); a
`PermanentJobError` sends it straight to the FailedJobRegistry, where an operator sees it.
"""

from __future__ import annotations


class PermanentJobError(Exception):
    """The job cannot succeed by running again unchanged (bad payload, refused request)."""


class ServiceUnavailable(Exception):
    """A service did not answer usefully (connection, timeout, 5xx); a later try may work."""
