"""Books against its OpenAPI document with schemathesis (`devstack.openapi_fuzz`)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from books.app import create_app
from books.config import Settings
from devstack.openapi_fuzz import Rules, check, operations, with_input
from devstack.servers import free_port
from devstack.services import ServiceProcess
from servicekit.api_keys import bearer
from tests.covers.conftest import png_image
from tests.fake_cloudinary import FakeCloudinary

# Generating the document touches no database.
DOCUMENT = create_app(Settings(database_url="postgresql://unused@127.0.0.1:1/unused")).openapi()
OPERATIONS = operations(DOCUMENT)
RULES = Rules(
    # A rule across two parameters, which OpenAPI cannot state (their descriptions do):
    # min_price not above max_price.
    excluded_checks={
        "GET /v1/books": [positive_data_acceptance],
        # A generated code may be one that exists (409), or in use (409 on delete).
        "POST /v1/item-types": [positive_data_acceptance],
        "DELETE /v1/item-types/{code}": [positive_data_acceptance],
    },
    # `POST /v1/books` takes JSON or a form with a cover. Generated forms carry the cover as
    # a part without a file name (a text field to every multipart parser) and text whose
    # length counts the spaces our trimming removes; tests/covers tests the form.
    media_types={"POST /v1/books": "application/json"},
    # A cover must be an image, which a binary schema cannot say; a format must be an item
    # type that exists (the document lists them at GET /v1/item-types).
    valid_values={"cover": png_image, "file": png_image, "format": lambda: "book"},
)


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


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_valid_input_gets_what_the_document_promises(
    books_api: ServiceProcess, admin_key: str, label: str
) -> None:
    # As the admin: writes need its key (schemathesis also checks they fail without).
    check(
        OPERATIONS[label],
        GenerationMode.POSITIVE,
        base_url=books_api.url,
        rules=RULES,
        headers=bearer(admin_key),
    )


@pytest.mark.parametrize("label", with_input(OPERATIONS))
def test_invalid_input_is_refused_as_the_document_says(
    books_api: ServiceProcess, admin_key: str, label: str
) -> None:
    check(
        OPERATIONS[label],
        GenerationMode.NEGATIVE,
        base_url=books_api.url,
        rules=RULES,
        headers=bearer(admin_key),
    )
