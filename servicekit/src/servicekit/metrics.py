"""The registry a process's `/metrics` serves: its own, or, when several processes share a
service (`PROMETHEUS_MULTIPROC_DIR` set: an API under `WEB_CONCURRENCY`, the worker pool),
every process's samples summed from that directory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from servicekit.asgi import MULTIPROCESS_ENV


class SampleFilesCollector(MultiProcessCollector):
    """Sums the processes' sample files, as prometheus_client's collector does, less any
    file still empty: a process creates its file, then sizes it, and a scrape between the
    two failed (a 500 from /metrics) on a file that holds no sample yet anyway."""

    def collect(self) -> Iterable[Metric]:
        files = [str(path) for path in Path(self._path).glob("*.db") if _has_content(path)]
        return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call, no-any-return]


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:  # its process ended and its file was removed
        return False


def service_registry() -> CollectorRegistry:
    """This process's registry, or a new one over every process's sample files."""
    if not os.environ.get(MULTIPROCESS_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    SampleFilesCollector(registry)  # type: ignore[no-untyped-call]
    return registry
