"""Previewing a policy or calendar change: what it would do to the loans and holds out
now, computed by making the change in a transaction that is rolled back."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

from tests.conftest import assert_problem
from tests.lending.conftest import shift_due
from tests.lending.test_policies import default_id, policy

DEFAULT = {
    "loan_period_days": 14,
    "max_renewals": 2,
    "fine_per_day": "0.25",
    "fine_cap": "10.00",
    "hold_pickup_days": 3,
}


def saved_state(db: psycopg.Connection[Any]) -> list[Any]:
    return [
        db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in (
            "lending_policies",
            "lending_policy_changes",
            "borrows",
            "holds",
            "closed_days",
            "closings",
            "outbox",
        )
    ]


class TestPolicyPreview:
    async def test_a_higher_fine_counts_the_overdue_loans_it_would_cost_more(
        self, client, borrow_now, db
    ) -> None:
        overdue = await borrow_now()
        shift_due(db, overdue["id"], days=2.5)
        await borrow_now()  # on time: its fine stays 0.00
        before = saved_state(db)

        response = await client.post(
            "/v1/policies/preview",
            json={"policy_id": default_id(db), "policy": DEFAULT | {"fine_per_day": "1.00"}},
        )

        assert response.status_code == 200, response.text
        preview = response.json()
        assert (preview["loans_out"], preview["loans_affected"]) == (2, 1)
        assert preview["differences"] == {"fine_if_returned_now": 1}
        (example,) = preview["examples"]
        assert example["id"] == overdue["id"]
        assert example["differences"] == [
            {"what": "fine_if_returned_now", "before": "0.75", "after": "3.00"}
        ]
        assert saved_state(db) == before

    async def test_a_new_policy_for_a_category_moves_its_loans_to_it(
        self, client, borrow_now, make_member, db
    ) -> None:
        child = await make_member(category="child")
        loan = await borrow_now(member=child)
        await borrow_now()  # an adult's: unchanged
        proposed = policy(item_type=None, loan_period_days=7, max_renewals=0, lost_after_days=30)

        preview = (await client.post("/v1/policies/preview", json={"policy": proposed})).json()

        assert preview["loans_affected"] == 1
        (example,) = preview["examples"]
        assert (example["id"], example["policy_before"]) == (loan["id"], default_id(db))
        assert example["policy_after"] != default_id(db)
        assert {d["what"] for d in example["differences"]} == {"renewable", "lost_after"}
        assert db.execute("SELECT count(*) FROM lending_policies").fetchone() == (1,)

    async def test_deleting_a_policy_sends_its_holds_back_to_the_default(
        self, client, make_member, make_lendable, make_policy, db
    ) -> None:
        child_rules = await make_policy(item_type=None, holds_allowed=False)
        member = await make_member()
        await client.post(
            "/v1/holds",
            json={"member_id": member["id"], "book_id": (await make_lendable(copies=1))["id"]},
        )
        await client.patch(f"/v1/members/{member['id']}", json={"category": "child"})

        preview = (
            await client.post(
                "/v1/policies/preview", json={"policy_id": child_rules["id"], "delete": True}
            )
        ).json()

        assert (preview["holds_open"], preview["holds_affected"]) == (1, 1)
        assert preview["differences"]["holds_allowed"] == 1
        assert (await client.get(f"/v1/policies/{child_rules['id']}")).status_code == 200

    async def test_a_closing_counts_the_loans_it_would_move(self, client, borrow_now, db) -> None:
        day = date.today() + timedelta(days=2)
        loan = await borrow_now()
        db.execute(
            "UPDATE borrows SET due_at = %s WHERE id = %s",
            [datetime.combine(day, time(9), UTC), loan["id"]],
        )
        await borrow_now()
        before = saved_state(db)

        body = {"closing": {"first_day": str(day), "last_day": str(day)}}
        preview = (await client.post("/v1/policies/preview", json=body)).json()

        assert preview["differences"] == {"due_at": 1, "due_at_if_renewed": 1}
        moved = preview["examples"][0]["differences"][0]
        assert moved["after"] == f"{day + timedelta(days=1)}T09:00:00Z"
        assert saved_state(db) == before

    async def test_the_change_meets_its_refusals(self, client, db) -> None:
        assert_problem(
            await client.post("/v1/policies/preview", json={"policy_id": 999, "delete": True}),
            404,
        )
        problem = assert_problem(
            await client.post(
                "/v1/policies/preview", json={"policy_id": default_id(db), "delete": True}
            ),
            409,
        )
        assert problem["error"] == "DEFAULT_POLICY"
        past = {"closing": {"first_day": "2020-01-01", "last_day": "2020-01-02"}}
        assert_problem(await client.post("/v1/policies/preview", json=past), 422)

    async def test_no_change_or_two_is_a_422(self, client, db) -> None:
        for body in (
            {},
            {"policy": DEFAULT, "closing": {"first_day": "2030-01-01", "last_day": "2030-01-01"}},
            {"delete": True},
        ):
            assert_problem(await client.post("/v1/policies/preview", json=body), 422)

    async def test_a_client_key_may_not_preview(self, shop) -> None:
        assert_problem(await shop.post("/v1/policies/preview", json={"policy": DEFAULT}), 403)
