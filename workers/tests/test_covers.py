"""`workers.covers.delete_image` with the real Cloudinary SDK against books' local fake."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import cloudinary
import pytest
import redis
from rq.job import JobStatus

from tests.conftest import ROOT, enqueue, fetch, queue, release_scheduled, work

DELETE = "workers.covers.delete_image"
PUBLIC_ID = "bookstore/covers/0123456789abcdef"


def books_fake_cloudinary() -> ModuleType:
    """Books' fake Cloudinary server (its tests' module, loaded by path: both suites name
    their test package `tests`)."""
    name = "books_tests_fake_cloudinary"
    if name not in sys.modules:
        path = ROOT / "books" / "tests" / "fake_cloudinary.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake, with the SDK configured for it through CLOUDINARY_URL, as in production."""
    module = books_fake_cloudinary()
    with module.FakeCloudinary().running() as fake:
        fake.images[PUBLIC_ID] = b"old cover"
        monkeypatch.setenv("CLOUDINARY_URL", fake.cloudinary_url())
        cloudinary.reset_config()
        yield fake
        monkeypatch.delenv("CLOUDINARY_URL")
        cloudinary.reset_config()


def delete_job(connection: redis.Redis, public_id: str = PUBLIC_ID) -> str:
    job = enqueue(connection, DELETE, {"public_id": public_id}, queue_name="maintenance")
    return job.id


class TestDeleteImage:
    def test_deletes_the_discarded_image(self, fake: Any, connection: redis.Redis) -> None:
        job_id = delete_job(connection)

        work(connection, "maintenance")

        assert fetch(connection, job_id).return_value() == "ok"
        assert fake.destroyed == [PUBLIC_ID]
        assert PUBLIC_ID not in fake.images

    def test_an_image_already_gone_counts_as_deleted(
        self, fake: Any, connection: redis.Redis
    ) -> None:
        first, second = delete_job(connection), delete_job(connection)

        work(connection, "maintenance")

        assert fetch(connection, first).return_value() == "ok"
        assert fetch(connection, second).return_value() == "not found"
        assert fetch(connection, second).get_status() == JobStatus.FINISHED

    def test_a_cloudinary_outage_is_retried_later(self, fake: Any, connection: redis.Redis) -> None:
        module = books_fake_cloudinary()
        fake.failure = module.Failure.HTTP_500
        job_id = delete_job(connection)

        work(connection, "maintenance")

        assert fetch(connection, job_id).get_status() == JobStatus.SCHEDULED
        assert PUBLIC_ID in fake.images

        fake.failure = None
        release_scheduled(connection, "maintenance")
        work(connection, "maintenance")

        assert fetch(connection, job_id).get_status() == JobStatus.FINISHED
        assert fake.destroyed == [PUBLIC_ID]

    def test_refused_credentials_fail_at_once_without_retries(
        self, fake: Any, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CLOUDINARY_URL", fake.cloudinary_url(api_secret="wrong-secret"))
        cloudinary.reset_config()
        job_id = delete_job(connection)

        work(connection, "maintenance")

        assert fetch(connection, job_id).get_status() == JobStatus.FAILED
        assert queue(connection, "maintenance").scheduled_job_registry.count == 0
        assert fake.rejected_signatures == 1
        assert PUBLIC_ID in fake.images
