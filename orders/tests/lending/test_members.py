from __future__ import annotations

import pytest

from tests.conftest import assert_nothing_written, assert_problem


class TestRegisterMember:
    async def test_created_with_the_default_loan_limit(self, client):
        response = await client.post(
            "/v1/members", json={"name": "  Ada Lovelace ", "email": "Ada@Example.org"}
        )
        assert response.status_code == 201, response.text
        member = response.json()
        assert response.headers["location"] == f"/v1/members/{member['id']}"
        assert member["name"] == "Ada Lovelace"
        assert member["email"] == "Ada@Example.org"
        assert member["status"] == "active"
        assert member["max_loans"] == 5
        assert member["loans_out"] == 0
        assert member["created_at"].endswith("Z")

    async def test_email_is_unique_ignoring_case(self, client, make_member, db):
        await make_member(email="ada@example.org")
        problem = assert_problem(
            await client.post("/v1/members", json={"name": "Ada", "email": "ADA@example.ORG"}), 409
        )
        assert problem["type"] == "/problems/email-taken"
        assert problem["errors"][0]["field"] == "email"
        assert db.execute("SELECT count(*) FROM members").fetchone() == (1,)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": "Ada", "email": "not-an-email"}, "email"),
            ({"name": "   ", "email": "a@b.org"}, "name"),
            ({"email": "a@b.org"}, "name"),
            ({"name": "Ada", "email": "a@b.org", "max_loans": -1}, "max_loans"),
            ({"name": "Ada", "email": "a@b.org", "max_loans": "5"}, "max_loans"),
            ({"name": "Ada", "email": "a@b.org", "status": "asleep"}, "status"),
            ({"name": "Ada", "email": "a@b.org", "loans_out": 3}, "loans_out"),
        ],
    )
    async def test_bad_input_is_422_and_nothing_written(self, client, db, body, field):
        problem = assert_problem(await client.post("/v1/members", json=body), 422)
        assert problem["errors"][0]["field"] == field
        assert_nothing_written(db)


class TestReadMembers:
    async def test_get_and_404(self, client, make_member):
        member = await make_member()
        assert (await client.get(f"/v1/members/{member['id']}")).json() == member
        problem = assert_problem(await client.get("/v1/members/999"), 404)
        assert problem["type"] == "/problems/member-not-found"

    async def test_list_newest_first_with_status_filter_and_links(self, client, make_member):
        first = await make_member()
        second = await make_member(status="blocked")
        response = await client.get("/v1/members", params={"limit": 1})
        assert response.json()["data"] == [second]
        assert response.headers["x-total-count"] == "2"
        assert 'rel="next"' in response.headers["link"]
        blocked = await client.get("/v1/members", params={"status": "active"})
        assert blocked.json()["data"] == [first]

    async def test_find_by_email_or_part_of_the_name(self, client, make_member):
        ada = await make_member(name="Ada Lovelace", email="ada@example.org")
        await make_member(name="Grace Hopper", email="grace@example.org")
        percent = await make_member(name="100% Reader", email="pct@example.org")

        async def found(q: str) -> list[int]:
            response = await client.get("/v1/members", params={"q": q})
            assert response.status_code == 200, response.text
            assert response.headers["x-total-count"] == str(len(response.json()["data"]))
            return [m["id"] for m in response.json()["data"]]

        assert await found("ADA@example.org") == [ada["id"]]
        assert await found("lovel") == [ada["id"]]
        assert await found("%") == [percent["id"]]  # a wildcard is a character here
        assert await found("example.org") == []  # an email matches whole, not in part
        assert_problem(await client.get("/v1/members", params={"q": ""}), 422)


class TestTextPostgresCannotStore:
    async def test_a_nul_is_a_422_naming_the_field(self, client, make_member, db):
        for body, field in (
            ({"name": "a\u0000b", "email": "nul@example.org"}, "name"),
            ({"name": "Nul", "email": "n\u0000l@example.org"}, "email"),
        ):
            problem = assert_problem(await client.post("/v1/members", json=body), 422)
            assert problem["errors"][0]["field"] == field
        member = await make_member()
        update = await client.patch(f"/v1/members/{member['id']}", json={"name": "a\u0000"})
        assert_problem(update, 422)
        assert_problem(await client.get("/v1/members", params={"q": "a\u0000"}), 422)
        assert db.execute("SELECT count(*) FROM members").fetchone() == (1,)


class TestUpdateMember:
    async def test_block_and_change_limit(self, client, make_member):
        member = await make_member()
        response = await client.patch(
            f"/v1/members/{member['id']}", json={"status": "blocked", "max_loans": 2}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "blocked"
        assert response.json()["max_loans"] == 2
        assert response.json()["name"] == member["name"]

    async def test_email_taken_by_another_is_409(self, client, make_member):
        await make_member(email="taken@example.org")
        member = await make_member()
        problem = assert_problem(
            await client.patch(f"/v1/members/{member['id']}", json={"email": "TAKEN@example.org"}),
            409,
        )
        assert problem["type"] == "/problems/email-taken"

    async def test_own_email_in_another_case_is_fine(self, client, make_member):
        member = await make_member(email="me@example.org")
        response = await client.patch(
            f"/v1/members/{member['id']}", json={"email": "ME@example.org"}
        )
        assert response.status_code == 200, response.text

    async def test_missing_member_is_404(self, client):
        assert_problem(await client.patch("/v1/members/77", json={"name": "X"}), 404)


class TestDeleteMember:
    async def test_soft_delete_then_404(self, client, make_member, db):
        member = await make_member()
        assert (await client.delete(f"/v1/members/{member['id']}")).status_code == 204
        assert_problem(await client.get(f"/v1/members/{member['id']}"), 404)
        assert_problem(await client.delete(f"/v1/members/{member['id']}"), 404)
        assert db.execute("SELECT count(*) FROM members").fetchone() == (1,)

    async def test_member_with_a_loan_out_cannot_be_deleted(self, client, borrow_now):
        loan = await borrow_now()
        problem = assert_problem(await client.delete(f"/v1/members/{loan['member_id']}"), 409)
        assert problem["type"] == "/problems/member-has-loans"
        assert "1 loan(s)" in problem["detail"]

    async def test_email_of_a_deleted_member_can_be_registered_again(self, client, make_member):
        member = await make_member(email="gone@example.org")
        await client.delete(f"/v1/members/{member['id']}")
        await make_member(email="gone@example.org")


class TestMemberHistory:
    async def test_pages_of_the_members_borrows_newest_first(
        self, client, make_member, borrow_now, make_lendable
    ):
        member = await make_member()
        loans = [await borrow_now(member=member) for _ in range(3)]
        await borrow_now()  # another member's
        response = await client.get(f"/v1/members/{member['id']}/borrows", params={"limit": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 3
        assert [b["id"] for b in body["data"]] == [loans[2]["id"], loans[1]["id"]]
        assert response.headers["x-total-count"] == "3"

    async def test_a_page_past_the_end_still_has_the_total(self, client, make_member, borrow_now):
        member = await make_member()
        for _ in range(3):
            await borrow_now(member=member)
        response = await client.get(f"/v1/members/{member['id']}/borrows", params={"offset": 5})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == []
        assert response.json()["total"] == 3
        assert response.headers["x-total-count"] == "3"

    async def test_a_member_without_borrows_has_an_empty_history(self, client, make_member):
        member = await make_member()
        response = await client.get(f"/v1/members/{member['id']}/borrows")
        assert response.status_code == 200, response.text
        assert response.json() == {"data": [], "total": 0, "limit": 50, "offset": 0}

    async def test_unknown_member_is_404(self, client):
        assert_problem(await client.get("/v1/members/5/borrows"), 404)

    async def test_deleted_member_is_404(self, client, make_member):
        member = await make_member()
        assert (await client.delete(f"/v1/members/{member['id']}")).status_code == 204
        problem = assert_problem(await client.get(f"/v1/members/{member['id']}/borrows"), 404)
        assert problem["type"] == "/problems/member-not-found"


class TestDeleteMemberWithHolds:
    async def test_open_holds_are_cancelled_and_a_set_aside_copy_moves_on(
        self, client, make_member, make_lendable, internal, db
    ):
        member = await make_member()
        waiting_book, ready_book = await make_lendable(), await make_lendable()
        holds = []
        for book in (waiting_book, ready_book):
            response = await client.post(
                "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
            )
            holds.append(response.json())
        await internal.post(f"/holds/{holds[1]['id']}/ready")

        assert (await client.delete(f"/v1/members/{member['id']}")).status_code == 204

        statuses = [(await client.get(f"/v1/holds/{h['id']}")).json()["status"] for h in holds]
        assert statuses == ["cancelled", "cancelled"]
        freed = db.execute("SELECT payload FROM outbox WHERE topic = 'copy.freed'").fetchall()
        assert [row[0] for row in freed] == [
            {"book_id": ready_book["id"], "reference": f"hold:{holds[1]['id']}"}
        ]
