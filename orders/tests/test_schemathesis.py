"""Orders against its OpenAPI document with schemathesis (`devstack.openapi_fuzz`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from devstack.openapi_fuzz import Rules, check, operations, with_input
from devstack.servers import free_port
from devstack.services import ServiceProcess
from orders.app import create_app
from servicekit.api_keys import bearer
from tests.conftest import orders_settings

# Generating the document touches no database and no books service.
DOCUMENT: dict[str, Any] = create_app(
    orders_settings("postgresql://unused@127.0.0.1:1/unused", "http://127.0.0.1:1")
).openapi_schema.to_schema()
OPERATIONS = operations(DOCUMENT)
RULES = Rules(
    # These bodies name members and books by id; one that does not exist is a 422 naming
    # it (as the predecessor answered an order of unknown books), which no schema can
    # foresee.
    excluded_checks={
        label: [positive_data_acceptance]
        for label in (
            "POST /v1/orders",
            "POST /v1/borrows",
            "POST /v1/holds",
            "GET /v1/policies/resolve",
            # A resume date must be after today, which no schema can say.
            "POST /v1/holds/{hold_id}/suspend",
            # A generated code may be one that exists (409), or in use (409 on delete).
            "POST /v1/member-categories",
            "DELETE /v1/member-categories/{code}",
            # A closing starts today or later and ends within a year of its start: dates
            # relative to today, which no schema can say.
            "POST /v1/calendar/closings",
            # One change exactly, naming a policy that exists, or closing days from today.
            "POST /v1/policies/preview",
        )
    },
    # A category must be one that exists (GET /v1/member-categories lists them); a
    # policy's, too (null: any).
    valid_values={"category": lambda: "adult", "member_category": lambda: None},
)


@pytest.fixture(scope="session")
def orders_api(orders_database_url: str, books_service: ServiceProcess) -> Iterator[ServiceProcess]:
    env = {"ORDERS_DATABASE_URL": orders_database_url, "ORDERS_BOOKS_URL": books_service.url}
    with ServiceProcess("orders.app:create_app", free_port(), env) as service:
        yield service


def test_the_served_document_is_the_one_tested(orders_api: ServiceProcess) -> None:
    assert httpx.get(f"{orders_api.url}/docs/openapi.json").json() == DOCUMENT


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_valid_input_gets_what_the_document_promises(
    orders_api: ServiceProcess, admin_key: str, label: str
) -> None:
    # As the admin, who may call every operation (schemathesis also checks that each
    # fails without a key).
    check(
        OPERATIONS[label],
        GenerationMode.POSITIVE,
        base_url=orders_api.url,
        rules=RULES,
        headers=bearer(admin_key),
    )


@pytest.mark.parametrize("label", with_input(OPERATIONS))
def test_invalid_input_is_refused_as_the_document_says(
    orders_api: ServiceProcess, admin_key: str, label: str
) -> None:
    check(
        OPERATIONS[label],
        GenerationMode.NEGATIVE,
        base_url=orders_api.url,
        rules=RULES,
        headers=bearer(admin_key),
    )
