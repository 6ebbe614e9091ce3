"""JSON has one kind of number: 3.0 is the integer 3 (schemathesis found it refused)."""

from __future__ import annotations

import pytest

from tests.conftest import assert_problem


async def test_a_whole_number_written_as_a_float_is_the_integer(client) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "Ada", "email": "ada@example.org", "max_loans": 3.0}
    response = await client.post("/v1/members", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["max_loans"] == 3


@pytest.mark.parametrize("max_loans", [3.5, "3", True], ids=["fraction", "string", "bool"])
async def test_other_numbers_stay_refused(client, max_loans) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "Ada", "email": "ada@example.org", "max_loans": max_loans}
    assert_problem(await client.post("/v1/members", json=body), 422)


async def test_a_number_followed_by_garbage_is_a_422(client) -> None:  # type: ignore[no-untyped-def]
    """Refused by the strict pass as the wrong type, and malformed to the second look
    (schemathesis found it a 500)."""
    response = await client.post(
        "/v1/members", content=b"9n\x0bB\x08", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)
