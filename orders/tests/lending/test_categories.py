"""Member categories: the admin-managed list, and the loan limit a category sets."""

from __future__ import annotations

import httpx
import psycopg

from tests.conftest import assert_problem

CHILDREN = {"code": "teen", "name": "Teenager", "max_loans": 4, "max_overdue_loans": 1}


class TestListCategories:
    async def test_lists_the_seeded_ones(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/member-categories")
        assert response.status_code == 200
        assert [(c["code"], c["max_loans"]) for c in response.json()] == [
            ("adult", 5),
            ("child", 3),
            ("staff", 20),
        ]
        assert response.json()[0]["max_balance"] == "10.00"


class TestCreateCategory:
    async def test_admin_adds_one(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/member-categories", json=CHILDREN)
        assert response.status_code == 201, response.text
        assert response.headers["location"] == "/v1/member-categories/teen"
        assert response.json() | {"created_at": 0, "updated_at": 0} == {
            **CHILDREN,
            "max_balance": "10.00",
            "block_after_final_notice": False,
            "created_at": 0,
            "updated_at": 0,
        }

    async def test_refuses_a_taken_code(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/member-categories", json=CHILDREN | {"code": "adult"})
        assert assert_problem(response, 409)["error"] == "CATEGORY_EXISTS"

    async def test_refuses_bad_values(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/member-categories", json=CHILDREN | {"max_balance": "1.5"}
        )
        assert assert_problem(response, 422)["errors"][0]["field"] == "max_balance"

    async def test_needs_an_admin_key(self, shop: httpx.AsyncClient) -> None:
        response = await shop.post("/v1/member-categories", json=CHILDREN)
        assert_problem(response, 403)


class TestUpdateCategory:
    async def test_changes_the_limit_of_its_members_at_once(
        self, client: httpx.AsyncClient, make_member
    ) -> None:
        member = await make_member(category="child")
        assert member["max_loans"] == 3
        response = await client.patch("/v1/member-categories/child", json={"max_loans": 2})
        assert response.json()["max_loans"] == 2
        assert (await client.get(f"/v1/members/{member['id']}")).json()["max_loans"] == 2

    async def test_unknown_is_a_404(self, client: httpx.AsyncClient) -> None:
        response = await client.patch("/v1/member-categories/nope", json={"max_loans": 2})
        assert_problem(response, 404)


class TestDeleteCategory:
    async def test_deletes_an_unused_one(self, client: httpx.AsyncClient) -> None:
        await client.post("/v1/member-categories", json=CHILDREN)
        assert (await client.delete("/v1/member-categories/teen")).status_code == 204
        assert_problem(await client.delete("/v1/member-categories/teen"), 404)

    async def test_refuses_one_a_member_has(self, client: httpx.AsyncClient, make_member) -> None:
        await make_member(category="staff")
        response = await client.delete("/v1/member-categories/staff")
        assert assert_problem(response, 409)["error"] == "CATEGORY_IN_USE"


class TestMemberCategory:
    async def test_defaults_to_adult_and_its_limit(self, make_member) -> None:
        member = await make_member()
        assert (member["category"], member["max_loans"], member["own_max_loans"]) == (
            "adult",
            5,
            None,
        )

    async def test_an_own_limit_wins_until_cleared(
        self, client: httpx.AsyncClient, make_member
    ) -> None:
        member = await make_member(category="staff", max_loans=1)
        assert (member["max_loans"], member["own_max_loans"]) == (1, 1)
        response = await client.patch(f"/v1/members/{member['id']}", json={"max_loans": None})
        assert (response.json()["max_loans"], response.json()["own_max_loans"]) == (20, None)

    async def test_unknown_category_is_a_422_and_nothing_is_written(
        self, client: httpx.AsyncClient, db: psycopg.Connection
    ) -> None:
        body = {"name": "Ada", "email": "ada@example.org", "category": "alien"}
        response = await client.post("/v1/members", json=body)
        assert assert_problem(response, 422)["error"] == "UNKNOWN_CATEGORY"
        assert db.execute("SELECT count(*) FROM members").fetchone() == (0,)

    async def test_moving_to_an_unknown_category_is_a_422(
        self, client: httpx.AsyncClient, make_member
    ) -> None:
        member = await make_member()
        response = await client.patch(f"/v1/members/{member['id']}", json={"category": "alien"})
        assert assert_problem(response, 422)["error"] == "UNKNOWN_CATEGORY"

    async def test_the_category_limit_refuses_a_borrow_naming_the_rule(
        self, client: httpx.AsyncClient, make_member, make_lendable
    ) -> None:
        await client.patch("/v1/member-categories/child", json={"max_loans": 1})
        member = await make_member(category="child")
        first, second = await make_lendable(), await make_lendable()
        ok = await client.post(
            "/v1/borrows", json={"member_id": member["id"], "book_id": first["id"]}
        )
        assert ok.status_code == 201
        response = await client.post(
            "/v1/borrows", json={"member_id": member["id"], "book_id": second["id"]}
        )
        body = assert_problem(response, 409)
        assert body["rule"] == {"name": "max_loans", "policy_id": None, "limit": 1, "current": 1}
