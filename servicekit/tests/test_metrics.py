"""The registry `/metrics` serves (`servicekit.metrics`): one process's, or the sample files
of all the processes of a service summed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from servicekit.metrics import MULTIPROCESS_ENV, SampleFilesCollector, service_registry

STARTED = ("workers_jobs_started_total", {"queue": "orders"})


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """A process's file with one count, and the file of a process that has just created
    its file and not yet sized it."""
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("workers_jobs_started", STARTED[0], ["queue"], ["orders"], "")
    written.write_value(key, 3.0, 0.0)
    written.close()  # type: ignore[no-untyped-call]
    (tmp_path / "counter_102.db").touch()
    return tmp_path


def test_a_file_still_empty_is_skipped_and_the_rest_summed(samples: Path) -> None:
    collector = SampleFilesCollector(None, path=str(samples))  # type: ignore[no-untyped-call]

    collected = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in collector.collect()
        for sample in family.samples
    }

    assert collected == {(STARTED[0], tuple(STARTED[1].items())): 3.0}


def test_prometheus_clients_own_collector_fails_on_it(samples: Path) -> None:
    collector = MultiProcessCollector(None, path=str(samples))  # type: ignore[no-untyped-call]

    with pytest.raises(struct.error):
        list(collector.collect())


def test_one_process_serves_its_own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)

    assert service_registry() is REGISTRY


def test_several_processes_serve_their_files_summed(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENV, str(samples))

    registry = service_registry()

    assert registry is not REGISTRY
    assert registry.get_sample_value(*STARTED) == 3.0
