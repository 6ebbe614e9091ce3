"""Lending policies as data: CRUD with its audit trail, and the resolver."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import asgi_client, assert_problem


def policy(**overrides: Any) -> dict[str, Any]:
    """A policy body, audiobooks for children unless overridden."""
    return {
        "member_category": "child",
        "item_type": "audiobook",
        "loan_period_days": 7,
        "max_renewals": 1,
        "fine_per_day": "0.10",
        "fine_cap": "2.00",
        "hold_pickup_days": 2,
    } | overrides


def default_id(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT id FROM lending_policies WHERE member_category IS NULL AND item_type IS NULL"
    ).fetchone()
    assert row is not None
    return int(row[0])


class TestListPolicies:
    async def test_the_migration_made_the_default_from_the_settings(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/policies")
        assert response.status_code == 200
        (default,) = response.json()
        assert default | {"id": 0, "created_at": 0, "updated_at": 0, "description": ""} == {
            "id": 0,
            "member_category": None,
            "item_type": None,
            "is_default": True,
            "description": "",
            "lendable": True,
            "loan_period_days": 14,
            "max_renewals": 2,
            "renew_grace_days": 0,
            "max_loans": None,
            "fine_per_day": "0.25",
            "fine_cap": "10.00",
            "grace_days": 0,
            "holds_allowed": True,
            "hold_pickup_days": 3,
            "max_holds": None,
            "lost_after_days": None,
            "lost_processing_fee": "0.00",
            "overdue_notice_days": [1, 7, 14],
            "created_at": 0,
            "updated_at": 0,
        }

    async def test_most_specific_first(self, client: httpx.AsyncClient, make_policy) -> None:
        await make_policy(member_category=None)
        await make_policy(item_type=None)
        await make_policy()
        matches = [
            (p["member_category"], p["item_type"])
            for p in (await client.get("/v1/policies")).json()
        ]
        assert matches == [
            ("child", "audiobook"),
            ("child", None),
            (None, "audiobook"),
            (None, None),
        ]

    async def test_desk_may_read_but_not_write(self, orders_app, key_of, make_policy) -> None:
        from servicekit.api_keys import Role

        async with asgi_client(orders_app, key_of(Role.DESK)) as desk:
            assert (await desk.get("/v1/policies")).status_code == 200
            assert_problem(await desk.post("/v1/policies", json=policy()), 403)


class TestCreatePolicy:
    async def test_201_with_location_and_an_audit_row(
        self, client: httpx.AsyncClient, db: psycopg.Connection
    ) -> None:
        response = await client.post("/v1/policies", json=policy(fine_cap="book_price"))
        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["location"] == f"/v1/policies/{created['id']}"
        assert created["fine_cap"] == "book_price"
        changes = (await client.get("/v1/policies/changes")).json()
        assert changes["total"] == 1
        (change,) = changes["data"]
        assert change["action"] == "created"
        assert change["policy_id"] == created["id"]
        assert change["before"] is None
        assert change["after"] == created
        assert change["api_key_name"] == "t-admin"
        assert len(change["api_key_prefix"]) == 12

    async def test_the_same_match_twice_is_a_409(
        self, client: httpx.AsyncClient, make_policy, db
    ) -> None:
        await make_policy()
        response = await client.post("/v1/policies", json=policy(loan_period_days=3))
        assert assert_problem(response, 409)["error"] == "POLICY_MATCH_TAKEN"
        assert db.execute("SELECT count(*) FROM lending_policy_changes").fetchone() == (1,)

    async def test_a_second_default_is_a_409(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/policies", json=policy(member_category=None, item_type=None)
        )
        assert assert_problem(response, 409)["error"] == "POLICY_MATCH_TAKEN"

    async def test_two_racing_creations_of_one_match_make_one_policy(
        self, client: httpx.AsyncClient, db: psycopg.Connection
    ) -> None:
        responses = await asyncio.gather(
            *(client.post("/v1/policies", json=policy()) for _ in range(5))
        )
        assert sorted(r.status_code for r in responses) == [201] + [409] * 4
        assert db.execute("SELECT count(*) FROM lending_policy_changes").fetchone() == (1,)

    async def test_an_unknown_category_is_a_422_and_nothing_is_written(
        self, client: httpx.AsyncClient, db: psycopg.Connection
    ) -> None:
        response = await client.post("/v1/policies", json=policy(member_category="alien"))
        body = assert_problem(response, 422)
        assert body["errors"][0]["field"] == "member_category"
        assert db.execute("SELECT count(*) FROM lending_policies").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM lending_policy_changes").fetchone() == (0,)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("loan_period_days", 0),
            ("fine_cap", "price"),
            ("fine_per_day", "0.1"),
            ("hold_pickup_days", 61),
            ("max_loans", -1),
            ("item_type", "Audio Book"),
            ("overdue_notice_days", [1, 7]),
        ],
    )
    async def test_bad_values_are_a_422(
        self, client: httpx.AsyncClient, field: str, value: Any
    ) -> None:
        response = await client.post("/v1/policies", json=policy(**{field: value}))
        assert assert_problem(response, 422)["errors"][0]["field"] == field

    async def test_needs_an_admin_key(self, shop: httpx.AsyncClient) -> None:
        assert_problem(await shop.post("/v1/policies", json=policy()), 403)


class TestReplacePolicy:
    async def test_replaces_and_audits_before_and_after(
        self, client: httpx.AsyncClient, make_policy
    ) -> None:
        created = await make_policy()
        response = await client.put(
            f"/v1/policies/{created['id']}", json=policy(loan_period_days=10, max_loans=2)
        )
        assert response.status_code == 200, response.text
        assert (response.json()["loan_period_days"], response.json()["max_loans"]) == (10, 2)
        changes = (await client.get(f"/v1/policies/{created['id']}/changes")).json()
        latest = changes["data"][0]
        assert latest["action"] == "updated"
        assert latest["before"]["loan_period_days"] == 7
        assert latest["after"]["loan_period_days"] == 10

    async def test_overdue_notice_days_kept_in_order_and_audited(
        self, client: httpx.AsyncClient, make_policy
    ) -> None:
        created = await make_policy()
        assert created["overdue_notice_days"] == [1, 7, 14]
        response = await client.put(
            f"/v1/policies/{created['id']}", json=policy(overdue_notice_days=[10, 3, 3])
        )
        assert response.json()["overdue_notice_days"] == [3, 3, 10]
        latest = (await client.get(f"/v1/policies/{created['id']}/changes")).json()["data"][0]
        assert latest["before"]["overdue_notice_days"] == [1, 7, 14]
        assert latest["after"]["overdue_notice_days"] == [3, 3, 10]

    async def test_onto_a_taken_match_is_a_409(
        self, client: httpx.AsyncClient, make_policy
    ) -> None:
        await make_policy()
        other = await make_policy(item_type="magazine")
        response = await client.put(f"/v1/policies/{other['id']}", json=policy())
        assert assert_problem(response, 409)["error"] == "POLICY_MATCH_TAKEN"

    async def test_the_default_keeps_its_match(self, client: httpx.AsyncClient, db) -> None:
        response = await client.put(f"/v1/policies/{default_id(db)}", json=policy())
        assert assert_problem(response, 409)["error"] == "DEFAULT_POLICY"

    async def test_the_default_may_change_its_numbers(self, client: httpx.AsyncClient, db) -> None:
        body = policy(member_category=None, item_type=None, loan_period_days=21)
        response = await client.put(f"/v1/policies/{default_id(db)}", json=body)
        assert response.json()["loan_period_days"] == 21

    async def test_unknown_is_a_404(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.put("/v1/policies/999", json=policy()), 404)


class TestDeletePolicy:
    async def test_deletes_and_keeps_the_history(
        self, client: httpx.AsyncClient, make_policy
    ) -> None:
        created = await make_policy()
        assert (await client.delete(f"/v1/policies/{created['id']}")).status_code == 204
        assert_problem(await client.get(f"/v1/policies/{created['id']}"), 404)
        changes = (await client.get(f"/v1/policies/{created['id']}/changes")).json()
        assert [c["action"] for c in changes["data"]] == ["deleted", "created"]
        assert changes["data"][0]["after"] is None

    async def test_the_default_cannot_be_deleted(self, client: httpx.AsyncClient, db) -> None:
        response = await client.delete(f"/v1/policies/{default_id(db)}")
        assert assert_problem(response, 409)["error"] == "DEFAULT_POLICY"
        assert db.execute("SELECT count(*) FROM lending_policy_changes").fetchone() == (0,)

    async def test_a_category_a_policy_names_cannot_be_deleted(
        self, client: httpx.AsyncClient, make_policy
    ) -> None:
        await client.post(
            "/v1/member-categories", json={"code": "teen", "name": "Teen", "max_loans": 2}
        )
        await make_policy(member_category="teen")
        response = await client.delete("/v1/member-categories/teen")
        assert assert_problem(response, 409)["error"] == "CATEGORY_IN_USE"


class TestResolve:
    async def test_most_specific_wins_and_says_why(
        self, client: httpx.AsyncClient, make_policy, make_member, make_lendable, db
    ) -> None:
        category_only = await make_policy(item_type=None)
        both = await make_policy()
        member = await make_member(category="child")
        book = await make_lendable(format="audiobook")
        response = await client.get(
            "/v1/policies/resolve", params={"member_id": member["id"], "book_id": book["id"]}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["member_category"], body["item_type"]) == ("child", "audiobook")
        assert body["policy"]["id"] == both["id"]
        assert [(c["match"], c["policy_id"]) for c in body["candidates"]] == [
            ("category and item type", both["id"]),
            ("category", category_only["id"]),
            ("item type", None),
            ("default", default_id(db)),
        ]
        assert body["reason"].startswith(f"Policy {both['id']} matches category and item type")

    async def test_falls_back_to_the_item_type_then_the_default(
        self, client: httpx.AsyncClient, make_policy, make_member, make_lendable, db
    ) -> None:
        by_type = await make_policy(member_category=None)
        adult = await make_member()
        audiobook, novel = await make_lendable(format="audiobook"), await make_lendable()
        resolve = "/v1/policies/resolve"
        first = await client.get(
            resolve, params={"member_id": adult["id"], "book_id": audiobook["id"]}
        )
        assert first.json()["policy"]["id"] == by_type["id"]
        assert "no policy for category and item type, category" in first.json()["reason"]
        second = await client.get(
            resolve, params={"member_id": adult["id"], "book_id": novel["id"]}
        )
        assert second.json()["policy"]["id"] == default_id(db)

    async def test_unknown_member_or_book_is_a_422(
        self, client: httpx.AsyncClient, make_member, make_lendable
    ) -> None:
        member, book = await make_member(), await make_lendable()
        response = await client.get(
            "/v1/policies/resolve", params={"member_id": 999, "book_id": book["id"]}
        )
        assert assert_problem(response, 422)["errors"][0] == {
            "field": "member_id",
            "in": "query",
            "message": "no such member",
        }
        response = await client.get(
            "/v1/policies/resolve", params={"member_id": member["id"], "book_id": 999}
        )
        assert assert_problem(response, 422)["errors"][0]["field"] == "book_id"

    async def test_the_resolution_is_one_query_on_the_match_index(
        self, db: psycopg.Connection
    ) -> None:
        """The default's lookup can use the unique index of matches (NULLS NOT DISTINCT)."""
        row = db.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'lending_policies_match_key'"
        ).fetchone()
        assert row is not None
        assert "NULLS NOT DISTINCT" in row[0]
