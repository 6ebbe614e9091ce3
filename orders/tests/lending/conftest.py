from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import SERVICE_HEADERS
from tests.lending.test_policies import policy


@pytest.fixture
def make_member(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """Factory: register a member through the API and return their JSON."""
    count = 0

    async def make(**overrides: Any) -> dict[str, Any]:
        nonlocal count
        count += 1
        body = {"name": f"Member {count}", "email": f"member{count}@example.org"} | overrides
        response = await client.post("/v1/members", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    return make


@pytest.fixture
def make_lendable(make_book):  # type: ignore[no-untyped-def]
    """Factory: a book with `copies` lendable copies."""

    async def make(copies: int = 2, **overrides: Any) -> dict[str, Any]:
        return await make_book(copies_total=copies, **overrides)  # type: ignore[no-any-return]

    return make


class Internal:
    """The internal lending API as the workers call it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, body: Any = None, status: int = 200) -> dict[str, Any]:
        response = await self.client.post(f"/internal/v1{path}", json=body, headers=SERVICE_HEADERS)
        assert response.status_code == status, response.text
        return response.json()  # type: ignore[no-any-return]

    async def activate(self, borrow_id: int) -> dict[str, Any]:
        return await self.post(f"/borrows/{borrow_id}/activate")


@pytest.fixture
def internal(client: httpx.AsyncClient) -> Internal:
    return Internal(client)


@pytest.fixture
def borrow_now(client, make_member, make_lendable, internal):  # type: ignore[no-untyped-def]
    """Factory: an active loan (member and book made unless given)."""

    async def make(
        member: dict[str, Any] | None = None, book: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        member = member or await make_member()
        book = book or await make_lendable()
        response = await client.post(
            "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
        )
        assert response.status_code == 201, response.text
        return await internal.activate(response.json()["id"])

    return make


@pytest.fixture
def owing(client, borrow_now, db):  # type: ignore[no-untyped-def]
    """Factory: a member who returned a loan late enough to owe `fee` (at 0.25 a day)."""

    async def make(days_late: int = 4) -> tuple[dict[str, Any], dict[str, Any]]:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=days_late - 0.5)
        returned = (await client.post(f"/v1/borrows/{loan['id']}/return")).json()
        member = (await client.get(f"/v1/members/{loan['member_id']}")).json()
        return member, returned

    return make


@pytest.fixture
def make_policy(client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    async def make(**overrides: Any) -> dict[str, Any]:
        response = await client.post("/v1/policies", json=policy(**overrides))
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    return make


def shift_due(db: psycopg.Connection[Any], borrow_id: int, *, days: float) -> None:
    """Move a loan's due date `days` into the past (negative: the future)."""
    db.execute(
        "UPDATE borrows SET due_at = now() - make_interval(secs => %s) WHERE id = %s",
        [days * 86400, borrow_id],
    )


def events(db: psycopg.Connection[Any], topic: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT payload FROM outbox WHERE topic = %s ORDER BY id", [topic])
    return [row[0] for row in rows]
