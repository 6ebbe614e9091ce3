"""The policy's cap on a member's open holds (`max_holds`)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg

from tests.conftest import assert_problem, row_counts
from tests.lending.test_holds import place


async def cap_holds(client: httpx.AsyncClient, limit: int | None, **match: Any) -> dict:
    """A policy for adult members (and `match`) that allows `limit` open holds."""
    body = {
        "member_category": "adult",
        "loan_period_days": 14,
        "max_renewals": 2,
        "fine_per_day": "0.25",
        "fine_cap": "10.00",
        "hold_pickup_days": 3,
        "max_holds": limit,
    } | match
    response = await client.post("/v1/policies", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class TestHoldCapPolicy:
    async def test_set_shown_and_audited(self, client):
        policy = await cap_holds(client, 2)
        assert policy["max_holds"] == 2
        [change] = (await client.get(f"/v1/policies/{policy['id']}/changes")).json()["data"]
        assert change["after"]["max_holds"] == 2

    async def test_out_of_range_is_a_422(self, client, db):
        body = {
            "loan_period_days": 14,
            "max_renewals": 2,
            "fine_per_day": "0.25",
            "fine_cap": "10.00",
            "hold_pickup_days": 3,
        }
        for bad in (-1, 1001, "2"):
            response = await client.post("/v1/policies", json=body | {"max_holds": bad})
            assert assert_problem(response, 422)["errors"][0]["field"] == "max_holds"
        assert db.execute("SELECT count(*) FROM lending_policies").fetchone() == (1,)


class TestHoldCap:
    async def test_a_hold_beyond_the_cap_is_refused_naming_the_rule(
        self, client, make_member, make_lendable, db
    ):
        policy = await cap_holds(client, 2)
        member = await make_member()
        for _ in range(2):
            await place(client, member, await make_lendable())
        book = await make_lendable()
        before = row_counts(db)
        response = await client.post(
            "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
        )
        problem = assert_problem(response, 409)
        assert problem["error"] == "HOLD_LIMIT_REACHED"
        assert problem["rule"] == {
            "name": "max_holds",
            "policy_id": policy["id"],
            "limit": 2,
            "current": 2,
        }
        assert row_counts(db) == before

    async def test_the_dry_run_meets_the_same_refusal(self, client, make_member, make_lendable, db):
        await cap_holds(client, 1)
        member = await make_member()
        book = await make_lendable()
        dry = await client.post(
            "/v1/holds?dry_run=true", json={"member_id": member["id"], "book_id": book["id"]}
        )
        assert dry.status_code == 200, dry.text
        await place(client, member, book)
        before = row_counts(db)
        response = await client.post(
            "/v1/holds?dry_run=true",
            json={"member_id": member["id"], "book_id": (await make_lendable())["id"]},
        )
        assert assert_problem(response, 409)["rule"]["name"] == "max_holds"
        assert row_counts(db) == before

    async def test_suspended_and_ready_holds_count_closed_ones_do_not(
        self, client, make_member, make_lendable, internal
    ):
        await cap_holds(client, 2)
        member = await make_member()
        suspended = await place(client, member, await make_lendable())
        await client.post(f"/v1/holds/{suspended['id']}/suspend", json={})
        ready = await place(client, member, await make_lendable())
        await internal.post(f"/holds/{ready['id']}/ready")
        third = {"member_id": member["id"], "book_id": (await make_lendable())["id"]}
        assert_problem(await client.post("/v1/holds", json=third), 409)
        await client.delete(f"/v1/holds/{suspended['id']}")
        assert (await client.post("/v1/holds", json=third)).status_code == 201

    async def test_the_cap_counts_holds_of_its_item_type_only(
        self, client, make_member, make_lendable
    ):
        await cap_holds(client, 1, item_type="audiobook")
        member = await make_member()
        await place(client, member, await make_lendable(format="audiobook"))
        await place(client, member, await make_lendable())
        problem = assert_problem(
            await client.post(
                "/v1/holds",
                json={
                    "member_id": member["id"],
                    "book_id": (await make_lendable(format="audiobook"))["id"],
                },
            ),
            409,
        )
        assert problem["rule"]["current"] == 1

    async def test_two_holds_placed_at_once_at_the_cap_cannot_both_pass(
        self, client, make_member, make_lendable, db
    ):
        await cap_holds(client, 1)
        member = await make_member()
        books = [await make_lendable() for _ in range(2)]
        for _ in range(5):
            db.execute("DELETE FROM holds")
            responses = await asyncio.gather(
                *(
                    client.post("/v1/holds", json={"member_id": member["id"], "book_id": b["id"]})
                    for b in books
                )
            )
            assert sorted(r.status_code for r in responses) == [201, 409]
            assert db.execute("SELECT count(*) FROM holds").fetchone() == (1,)


class TestBorrowThatWouldBecomeAHold:
    async def test_rejected_at_the_cap_with_the_reason(
        self, client, make_member, make_lendable, internal, db, books_database_url
    ):
        await cap_holds(client, 1)
        member = await make_member()
        await place(client, member, await make_lendable())
        book = await make_lendable(copies=1)
        # The copy out, as a worker's checkout leaves it in books.
        with psycopg.connect(books_database_url, autocommit=True) as books_db:
            books_db.execute("UPDATE books SET copies_available = 0 WHERE id = %s", [book["id"]])
        body = {"member_id": member["id"], "book_id": book["id"]}
        dry = (await client.post("/v1/borrows?dry_run=true", json=body)).json()
        assert "would be rejected" in dry["outcome"]
        assert "allows 1" in dry["outcome"]
        response = await client.post("/v1/borrows", json=body)
        assert response.status_code == 201, response.text
        held = await internal.post(f"/borrows/{response.json()['id']}/hold")
        assert held["status"] == "rejected"
        assert "allows 1" in held["rejection_reason"]
        assert db.execute(
            "SELECT count(*) FROM holds WHERE member_id = %s", [member["id"]]
        ).fetchone() == (1,)
        loans_out = db.execute("SELECT loans_out FROM members WHERE id = %s", [member["id"]])
        assert loans_out.fetchone() == (0,)
