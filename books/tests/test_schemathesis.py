"""The books service against its own OpenAPI document, as schemathesis sees it: every
documented operation, with generated valid and invalid input and every check, over real
HTTP to a running server.

Schemathesis's own pytest plugin does not run under pytest 9 (its lazy fixture loader reads
a private attribute pytest dropped), so the operations are parametrized here from the
document the app generates, and each runs as a Hypothesis test of its strategy, 30
examples each as `st run` would."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from books.app import create_app
from books.config import Settings
from devstack.servers import free_port
from devstack.services import ServiceProcess
from tests.covers.conftest import png_image
from tests.fake_cloudinary import FakeCloudinary

# Generating the document touches no database.
DOCUMENT = create_app(Settings(database_url="postgresql://unused@127.0.0.1:1/unused")).openapi()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {
    operation.label: operation for operation in (r.ok() for r in SCHEMA.get_all_operations())
}
EXAMPLES = 30


# Operations without parameters or body have no invalid input to generate.
NEGATIVE = sorted(
    label
    for label, operation in OPERATIONS.items()
    if operation.body or any(True for _ in operation.iter_parameters())
)
# What OpenAPI cannot state (the descriptions do), so valid-looking input is refused: a rule
# across two parameters, min_price not above max_price.
BEYOND_THE_DOCUMENT = {"GET /v1/books": [positive_data_acceptance]}
# A cover must be an image, which a binary schema cannot say: valid cases send one.
FILE_FIELDS = ("cover", "file")
# `POST /v1/books` takes JSON or a form with a cover. Generated forms carry the cover as a
# part without a file name (a text field to every multipart parser) and text whose length
# counts the spaces our trimming removes; the form is tested in tests/covers instead.
MEDIA_TYPES = {"POST /v1/books": "application/json"}


@pytest.fixture(scope="session")
def books_api(books_database_url: str) -> Iterator[ServiceProcess]:
    with FakeCloudinary().running() as cloudinary:
        env = {
            "BOOKS_DATABASE_URL": books_database_url,
            "CLOUDINARY_URL": cloudinary.cloudinary_url(),
        }
        with ServiceProcess("books.app:create_app", free_port(), env) as service:
            yield service


def test_the_served_document_is_the_one_tested(books_api: ServiceProcess) -> None:
    assert httpx.get(f"{books_api.url}/openapi.json").json() == DOCUMENT


def run(label: str, mode: GenerationMode, base_url: str) -> None:
    strategy = OPERATIONS[label].as_strategy(generation_mode=mode)
    if media_type := MEDIA_TYPES.get(label):
        strategy = strategy.filter(lambda case: case.media_type == media_type)

    @given(strategy)
    @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            for name in FILE_FIELDS:
                if name in case.body:
                    case.body[name] = png_image()
        case.call_and_validate(
            base_url=base_url, excluded_checks=BEYOND_THE_DOCUMENT.get(label, [])
        )

    call()


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_valid_input_gets_what_the_document_promises(books_api: ServiceProcess, label: str) -> None:
    run(label, GenerationMode.POSITIVE, books_api.url)


@pytest.mark.parametrize("label", NEGATIVE)
def test_invalid_input_is_refused_as_the_document_says(
    books_api: ServiceProcess, label: str
) -> None:
    run(label, GenerationMode.NEGATIVE, books_api.url)
