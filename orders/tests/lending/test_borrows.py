from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from tests.conftest import assert_nothing_written, assert_problem
from tests.lending.conftest import events, shift_due


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TestRequestBorrow:
    async def test_pending_with_the_book_snapshotted_and_an_event(
        self, client, make_member, make_lendable, db
    ):
        member = await make_member()
        book = await make_lendable(title="Dune", author="Frank Herbert")
        response = await client.post(
            "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
        )
        assert response.status_code == 201, response.text
        borrow = response.json()
        assert response.headers["location"] == f"/v1/borrows/{borrow['id']}"
        assert borrow["status"] == "pending"
        assert (borrow["book_title"], borrow["book_author"]) == ("Dune", "Frank Herbert")
        assert borrow["due_at"] is None
        assert events(db, "borrow.requested") == [
            {"borrow_id": borrow["id"], "book_id": book["id"]}
        ]
        member_now = (await client.get(f"/v1/members/{member['id']}")).json()
        assert member_now["loans_out"] == 1

    async def test_retry_with_the_same_key_replays(self, client, make_member, make_lendable, db):
        member, book = await make_member(), await make_lendable()
        body = {"member_id": member["id"], "book_id": book["id"]}
        headers = {"Idempotency-Key": "borrow-1"}
        first = await client.post("/v1/borrows", json=body, headers=headers)
        second = await client.post("/v1/borrows", json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.content == first.content
        assert second.headers["idempotent-replayed"] == "true"
        assert db.execute("SELECT count(*) FROM borrows").fetchone() == (1,)

    async def test_same_key_other_body_is_422(self, client, make_member, make_lendable):
        member, book, other = await make_member(), await make_lendable(), await make_lendable()
        headers = {"Idempotency-Key": "borrow-2"}
        await client.post(
            "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}, headers=headers
        )
        problem = assert_problem(
            await client.post(
                "/v1/borrows",
                json={"member_id": member["id"], "book_id": other["id"]},
                headers=headers,
            ),
            422,
        )
        assert problem["type"] == "/problems/idempotency-key-reused"

    async def test_unknown_member_is_422(self, client, make_lendable, db):
        book = await make_lendable()
        problem = assert_problem(
            await client.post("/v1/borrows", json={"member_id": 42, "book_id": book["id"]}), 422
        )
        assert problem["type"] == "/problems/unknown-member"
        assert problem["errors"][0]["field"] == "member_id"
        assert_nothing_written(db)

    async def test_unknown_or_deleted_book_is_422(self, client, books, make_member, make_lendable):
        member, book = await make_member(), await make_lendable()
        await books.delete(f"/v1/books/{book['id']}")
        for book_id in (book["id"], 987654):
            problem = assert_problem(
                await client.post(
                    "/v1/borrows", json={"member_id": member["id"], "book_id": book_id}
                ),
                422,
            )
            assert problem["type"] == "/problems/unknown-book"

    async def test_blocked_member_is_403(self, client, make_member, make_lendable, db):
        member, book = await make_member(status="blocked"), await make_lendable()
        problem = assert_problem(
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
            ),
            403,
        )
        assert problem["type"] == "/problems/member-blocked"
        assert db.execute("SELECT count(*) FROM borrows").fetchone() == (0,)

    async def test_book_without_copies_is_409(self, client, make_member, make_book):
        member, book = await make_member(), await make_book()
        problem = assert_problem(
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
            ),
            409,
        )
        assert problem["type"] == "/problems/book-not-lendable"

    async def test_the_same_book_twice_is_409(self, client, make_member, make_lendable, db):
        member, book = await make_member(), await make_lendable()
        body = {"member_id": member["id"], "book_id": book["id"]}
        assert (await client.post("/v1/borrows", json=body)).status_code == 201
        problem = assert_problem(await client.post("/v1/borrows", json=body), 409)
        assert problem["type"] == "/problems/already-borrowed"
        assert db.execute("SELECT loans_out FROM members").fetchone() == (1,)

    async def test_at_the_loan_limit_is_409(self, client, make_member, make_lendable):
        member = await make_member(max_loans=1)
        first, second = await make_lendable(), await make_lendable()
        await client.post("/v1/borrows", json={"member_id": member["id"], "book_id": first["id"]})
        problem = assert_problem(
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": second["id"]}
            ),
            409,
        )
        assert problem["type"] == "/problems/loan-limit-reached"
        assert "limit" in problem["detail"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"member_id": 1}, "book_id"),
            ({"member_id": "1", "book_id": 1}, "member_id"),
            ({"member_id": 0, "book_id": 1}, "member_id"),
            ({"member_id": 1, "book_id": 1, "due_at": "2030-01-01"}, "due_at"),
        ],
    )
    async def test_bad_body_is_422(self, client, db, body, field):
        problem = assert_problem(await client.post("/v1/borrows", json=body), 422)
        assert problem["errors"][0]["field"] == field
        assert_nothing_written(db)


class TestLoanLimitRace:
    async def test_twenty_borrows_at_once_admit_exactly_the_limit(
        self, client, make_member, make_lendable, db
    ):
        member = await make_member(max_loans=5)
        books = [await make_lendable() for _ in range(20)]
        responses = await asyncio.gather(
            *(
                client.post("/v1/borrows", json={"member_id": member["id"], "book_id": b["id"]})
                for b in books
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 5 + [409] * 15
        assert db.execute("SELECT count(*) FROM borrows").fetchone() == (5,)
        assert db.execute("SELECT loans_out FROM members").fetchone() == (5,)

    async def test_the_same_book_twenty_times_at_once_is_one_borrow(
        self, client, make_member, make_lendable, db
    ):
        member, book = await make_member(max_loans=50), await make_lendable()
        body = {"member_id": member["id"], "book_id": book["id"]}
        responses = await asyncio.gather(
            *(client.post("/v1/borrows", json=body) for _ in range(20))
        )
        assert sorted(r.status_code for r in responses) == [201] + [409] * 19
        assert db.execute("SELECT loans_out FROM members").fetchone() == (1,)


class TestActivation:
    async def test_active_with_due_date_one_loan_period_later(
        self, client, make_member, make_lendable, internal
    ):
        member, book = await make_member(), await make_lendable()
        borrow = (
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
            )
        ).json()
        loan = await internal.activate(borrow["id"])
        assert loan["status"] == "active"
        assert when(loan["due_at"]) - when(loan["borrowed_at"]) == timedelta(days=14)
        assert await internal.activate(borrow["id"]) == loan

    async def test_without_the_service_key_is_401(self, client):
        assert_problem(await client.post("/internal/v1/borrows/1/activate"), 401)

    async def test_held_instead_queues_a_hold(
        self, client, make_member, make_lendable, internal, db
    ):
        member, book = await make_member(), await make_lendable()
        borrow = (
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
            )
        ).json()
        held = await internal.post(f"/borrows/{borrow['id']}/hold")
        assert held["status"] == "held"
        hold = (await client.get(f"/v1/holds/{held['hold_id']}")).json()
        assert (hold["status"], hold["position"]) == ("waiting", 1)
        assert await internal.post(f"/borrows/{borrow['id']}/hold") == held
        assert events(db, "hold.placed") == [{"hold_id": hold["id"], "book_id": book["id"]}]
        assert db.execute("SELECT loans_out FROM members").fetchone() == (0,)
        # A held request cannot become a loan any more: the worker puts its copy back.
        problem = assert_problem(
            await client.post(
                f"/internal/v1/borrows/{borrow['id']}/activate",
                headers={"X-Service-Key": "test-service-key"},
            ),
            409,
        )
        assert "held" in problem["detail"]

    async def test_rejected_keeps_its_first_reason(
        self, client, make_member, make_lendable, internal
    ):
        member, book = await make_member(), await make_lendable()
        borrow = (
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
            )
        ).json()
        first = await internal.post(f"/borrows/{borrow['id']}/reject", {"reason": "book removed"})
        again = await internal.post(f"/borrows/{borrow['id']}/reject", {"reason": "other"})
        assert first["status"] == "rejected"
        assert again["rejection_reason"] == "book removed"


class TestReturn:
    async def test_on_time_no_fee_and_the_copy_moves_on(self, client, borrow_now, db):
        loan = await borrow_now()
        response = await client.post(f"/v1/borrows/{loan['id']}/return")
        assert response.status_code == 200, response.text
        returned = response.json()
        assert returned["status"] == "returned"
        assert returned["late_fee"] == "0.00"
        assert returned["returned_at"] is not None
        assert events(db, "copy.freed") == [
            {"book_id": loan["book_id"], "reference": f"borrow:{loan['id']}"}
        ]
        assert db.execute("SELECT loans_out FROM members").fetchone() == (0,)

    async def test_a_second_return_answers_the_same_loan_and_frees_nothing(
        self, client, borrow_now, db
    ):
        loan = await borrow_now()
        first = await client.post(f"/v1/borrows/{loan['id']}/return")
        second = await client.post(f"/v1/borrows/{loan['id']}/return")
        assert second.status_code == 200
        assert second.json() == first.json()
        assert len(events(db, "copy.freed")) == 1

    async def test_late_return_charges_per_started_day(self, client, borrow_now, db):
        loan = await borrow_now()
        shift_due(db, loan["id"], days=2.5)
        returned = (await client.post(f"/v1/borrows/{loan['id']}/return")).json()
        assert returned["late_fee"] == "0.75"

    async def test_late_fee_is_capped(self, client, borrow_now, db):
        loan = await borrow_now()
        shift_due(db, loan["id"], days=400)
        returned = (await client.post(f"/v1/borrows/{loan['id']}/return")).json()
        assert returned["late_fee"] == "10.00"

    async def test_pending_borrow_cannot_be_returned(self, client, make_member, make_lendable):
        member, book = await make_member(), await make_lendable()
        borrow = (
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
            )
        ).json()
        problem = assert_problem(await client.post(f"/v1/borrows/{borrow['id']}/return"), 409)
        assert "pending" in problem["detail"]

    async def test_missing_borrow_is_404(self, client):
        assert_problem(await client.post("/v1/borrows/404/return"), 404)

    async def test_concurrent_returns_free_the_copy_once(self, client, borrow_now, db):
        loan = await borrow_now()
        responses = await asyncio.gather(
            *(client.post(f"/v1/borrows/{loan['id']}/return") for _ in range(10))
        )
        assert {r.status_code for r in responses} == {200}
        assert len(events(db, "copy.freed")) == 1
        assert db.execute("SELECT loans_out FROM members").fetchone() == (0,)


class TestRenew:
    async def test_moves_the_due_date_one_period(self, client, borrow_now):
        loan = await borrow_now()
        renewed = (await client.post(f"/v1/borrows/{loan['id']}/renew")).json()
        assert renewed["renewals"] == 1
        assert when(renewed["due_at"]) - when(loan["due_at"]) == timedelta(days=14)

    async def test_at_most_two_renewals(self, client, borrow_now):
        loan = await borrow_now()
        for _ in range(2):
            assert (await client.post(f"/v1/borrows/{loan['id']}/renew")).status_code == 200
        problem = assert_problem(await client.post(f"/v1/borrows/{loan['id']}/renew"), 409)
        assert problem["type"] == "/problems/renewal-refused"
        assert "2 time(s)" in problem["detail"]

    async def test_overdue_loan_is_refused(self, client, borrow_now, db):
        loan = await borrow_now()
        shift_due(db, loan["id"], days=1)
        problem = assert_problem(await client.post(f"/v1/borrows/{loan['id']}/renew"), 409)
        assert "overdue" in problem["detail"]

    async def test_refused_when_another_member_waits(self, client, borrow_now, make_member):
        loan = await borrow_now()
        other = await make_member()
        response = await client.post(
            "/v1/holds", json={"member_id": other["id"], "book_id": loan["book_id"]}
        )
        assert response.status_code == 201, response.text
        problem = assert_problem(await client.post(f"/v1/borrows/{loan['id']}/renew"), 409)
        assert "waiting" in problem["detail"]

    async def test_concurrent_renewals_never_pass_the_limit(self, client, borrow_now, db):
        loan = await borrow_now()
        await asyncio.gather(*(client.post(f"/v1/borrows/{loan['id']}/renew") for _ in range(10)))
        row = db.execute("SELECT renewals FROM borrows WHERE id = %s", [loan["id"]]).fetchone()
        assert row is not None
        assert row[0] <= 2


class TestListBorrows:
    async def test_overdue_filter_longest_overdue_first(self, client, borrow_now, db):
        on_time, late, later = await borrow_now(), await borrow_now(), await borrow_now()
        shift_due(db, late["id"], days=1)
        shift_due(db, later["id"], days=5)
        response = await client.get("/v1/borrows", params={"status": "overdue"})
        body = response.json()
        assert [b["id"] for b in body["data"]] == [later["id"], late["id"]]
        assert all(b["overdue"] for b in body["data"])
        assert body["total"] == 2
        everything = (await client.get("/v1/borrows")).json()
        assert everything["total"] == 3
        assert on_time["id"] in [b["id"] for b in everything["data"]]

    async def test_filters_by_member_and_book(self, client, borrow_now, make_member):
        member = await make_member()
        mine = await borrow_now(member=member)
        await borrow_now()
        by_member = (await client.get("/v1/borrows", params={"member_id": member["id"]})).json()
        assert [b["id"] for b in by_member["data"]] == [mine["id"]]
        by_book = (await client.get("/v1/borrows", params={"book_id": mine["book_id"]})).json()
        assert [b["id"] for b in by_book["data"]] == [mine["id"]]

    async def test_a_page_past_the_end_still_has_the_total(self, client, borrow_now, db):
        late = await borrow_now()
        await borrow_now()
        shift_due(db, late["id"], days=1)
        response = await client.get("/v1/borrows", params={"status": "overdue", "offset": 1})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == []
        assert response.json()["total"] == 1
        assert response.headers["x-total-count"] == "1"

    async def test_unknown_status_is_422(self, client):
        problem = assert_problem(
            await client.get("/v1/borrows", params={"status": "misplaced"}), 422
        )
        assert problem["errors"][0]["field"] == "status"


class TestPreparedStatements:
    async def test_borrowing_again_and_again_keeps_working(self, client, borrow_now, make_member):
        """psycopg prepares a statement on its fifth run on a connection; the partial
        unique index must still be found by `ON CONFLICT … WHERE` then."""
        member = await make_member()
        for _ in range(60):
            loan = await borrow_now(member=member)
            assert (await client.post(f"/v1/borrows/{loan['id']}/return")).status_code == 200
