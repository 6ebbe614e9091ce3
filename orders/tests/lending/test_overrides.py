"""Staff overrides of blocks: a librarian lets one action through a member's block with a
reason; the override is recorded with the action, and only with it."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import assert_problem
from tests.lending.conftest import shift_due

REASON = {"override_reason": "Paid in full by phone; payment on its way"}
BLOCK = {"name": "max_balance", "policy_id": None, "limit": "1.00", "current": "2.00"}


def overrides(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT member_id, action, rule ->> 'name', reason FROM block_overrides ORDER BY id"
    ).fetchall()


@pytest.fixture
async def blocked(client, owing):  # type: ignore[no-untyped-def]
    """A member who owes 2.00 where their category allows 1.00."""
    await client.patch("/v1/member-categories/adult", json={"max_balance": "1.00"})
    member, _ = await owing(days_late=8)
    return member


class TestOverrides:
    async def test_a_borrow_through_a_block_is_recorded_with_its_reason(
        self, client, blocked, make_lendable, db
    ) -> None:
        book = await make_lendable()
        body = {"member_id": blocked["id"], "book_id": book["id"]}
        assert_problem(await client.post("/v1/borrows", json=body), 403)

        response = await client.post("/v1/borrows", json=body, params=REASON)

        assert response.status_code == 201, response.text
        assert overrides(db) == [
            (blocked["id"], "borrow", "max_balance", REASON["override_reason"])
        ]
        listed = await client.get(f"/v1/members/{blocked['id']}/overrides")
        assert listed.status_code == 200, listed.text
        assert listed.headers["x-total-count"] == "1"
        (entry,) = listed.json()["data"]
        assert entry["action"] == "borrow"
        assert entry["rule"] == BLOCK
        assert entry["reason"] == REASON["override_reason"]
        assert entry["recorded_by"].startswith("admin key ")
        # One action only: the next is refused again.
        other = await make_lendable()
        again = {"member_id": blocked["id"], "book_id": other["id"]}
        assert_problem(await client.post("/v1/borrows", json=again), 403)

    async def test_renew_hold_and_checkout_can_be_let_through(
        self, client, make_member, borrow_now, make_lendable, internal, db
    ) -> None:
        blocked = await make_member()
        loan = await borrow_now(member=blocked)
        late = await borrow_now(member=blocked)
        shift_due(db, late["id"], days=7.5)
        await client.post(f"/v1/borrows/{late['id']}/return")  # owes 2.00
        await client.patch("/v1/member-categories/adult", json={"max_balance": "1.00"})
        renew = f"/v1/borrows/{loan['id']}/renew"
        assert_problem(await client.post(renew), 403)
        assert (await client.post(renew, params=REASON)).status_code == 200

        book = await make_lendable(copies=1)
        hold_body = {"member_id": blocked["id"], "book_id": book["id"]}
        assert_problem(await client.post("/v1/holds", json=hold_body), 403)
        hold = await client.post("/v1/holds", json=hold_body, params=REASON)
        assert hold.status_code == 201, hold.text
        await internal.post(f"/holds/{hold.json()['id']}/ready")
        checkout = f"/v1/holds/{hold.json()['id']}/checkout"
        assert_problem(await client.post(checkout), 403)
        assert (await client.post(checkout, params=REASON)).status_code == 201
        assert [row[1] for row in overrides(db)] == ["renew", "hold", "checkout"]

    async def test_a_dry_run_says_what_it_would_let_through_and_records_nothing(
        self, client, blocked, make_lendable, db
    ) -> None:
        book = await make_lendable()
        body = {"member_id": blocked["id"], "book_id": book["id"]}
        dry = await client.post("/v1/borrows", json=body, params={"dry_run": "true", **REASON})
        assert dry.status_code == 200, dry.text
        assert dry.json()["overrides"] == BLOCK
        assert overrides(db) == []

    async def test_no_block_records_no_override(self, client, borrow_now, db) -> None:
        loan = await borrow_now()
        assert (
            await client.post(f"/v1/borrows/{loan['id']}/renew", params=REASON)
        ).status_code == 200
        assert overrides(db) == []

    async def test_an_override_does_not_lift_other_rules(
        self, client, blocked, make_lendable, db
    ) -> None:
        await client.patch(f"/v1/members/{blocked['id']}", json={"max_loans": 0})
        book = await make_lendable()
        body = {"member_id": blocked["id"], "book_id": book["id"]}
        problem = assert_problem(await client.post("/v1/borrows", json=body, params=REASON), 409)
        assert problem["rule"]["name"] == "max_loans"
        assert overrides(db) == []  # the refused action took its override with it

    async def test_a_member_blocked_by_hand_is_not_overridable(
        self, client, make_member, make_lendable, db
    ) -> None:
        member = await make_member(status="blocked")
        book = await make_lendable()
        body = {"member_id": member["id"], "book_id": book["id"]}
        problem = assert_problem(await client.post("/v1/borrows", json=body, params=REASON), 403)
        assert problem["rule"]["name"] == "member_status"
        assert overrides(db) == []

    async def test_overdue_loans_are_a_block_too(
        self, client, borrow_now, make_lendable, db
    ) -> None:
        loan = await borrow_now()
        await client.patch("/v1/member-categories/adult", json={"max_overdue_loans": 0})
        shift_due(db, loan["id"], days=2)
        body = {"member_id": loan["member_id"], "book_id": (await make_lendable())["id"]}
        assert (await client.post("/v1/borrows", json=body, params=REASON)).status_code == 201
        assert overrides(db)[0][2] == "max_overdue_loans"


class TestWhoMayOverride:
    async def test_a_client_key_may_not_override(
        self, shop: httpx.AsyncClient, blocked, make_lendable, db
    ) -> None:
        book = await make_lendable()
        body = {"member_id": blocked["id"], "book_id": book["id"]}
        problem = assert_problem(await shop.post("/v1/borrows", json=body, params=REASON), 403)
        assert problem["error"] == "OVERRIDE_NOT_ALLOWED"
        assert overrides(db) == []

    async def test_a_blank_reason_is_a_422(self, client, blocked, make_lendable, db) -> None:
        book = await make_lendable()
        body = {"member_id": blocked["id"], "book_id": book["id"]}
        response = await client.post("/v1/borrows", json=body, params={"override_reason": "  "})
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["field"] == "override_reason"
        assert overrides(db) == []

    async def test_an_unknown_member_has_no_overrides_to_list(self, client) -> None:
        assert_problem(await client.get("/v1/members/999/overrides"), 404)
