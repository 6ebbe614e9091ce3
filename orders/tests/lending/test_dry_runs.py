"""`dry_run=true` on every circulation action: what would happen, nothing written."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg

from tests.conftest import assert_problem, row_counts
from tests.lending.conftest import shift_due


def outbox(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT id, topic FROM outbox ORDER BY id").fetchall()


def snapshot(db: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """Every table, the outbox's rows, the members' counters and the loans' states."""
    return (
        row_counts(db),
        outbox(db),
        db.execute("SELECT id, loans_out FROM members ORDER BY id").fetchall(),
        db.execute(
            "SELECT id, status, due_at, renewals, late_fee FROM borrows ORDER BY id"
        ).fetchall(),
        db.execute("SELECT id, status, pickup_by FROM holds ORDER BY id").fetchall(),
    )


def near(value: str, expected: datetime) -> bool:
    return abs(datetime.fromisoformat(value) - expected) < timedelta(minutes=1)


class TestBorrowDryRun:
    async def test_answers_the_policy_and_due_date_and_writes_nothing(
        self, client: httpx.AsyncClient, make_member, make_lendable, db
    ) -> None:
        member, book = await make_member(), await make_lendable()
        before = snapshot(db)
        response = await client.post(
            "/v1/borrows?dry_run=true",
            json={"member_id": member["id"], "book_id": book["id"]},
            headers={"Idempotency-Key": "dry-1"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["dry_run"], body["action"], body["member_id"]) == (
            True,
            "borrow",
            member["id"],
        )
        assert near(body["due_at"], datetime.now().astimezone() + timedelta(days=14))
        assert isinstance(body["policy_id"], int)
        assert snapshot(db) == before
        assert db.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)
        # The real borrow with the same key afterwards is not a replay.
        real = await client.post(
            "/v1/borrows",
            json={"member_id": member["id"], "book_id": book["id"]},
            headers={"Idempotency-Key": "dry-1"},
        )
        assert real.status_code == 201
        assert "idempotent-replayed" not in real.headers

    async def test_no_copy_free_says_it_would_be_held(
        self, client, make_member, make_lendable, books_database_url
    ) -> None:
        book = await make_lendable(copies=1)
        # The copy out, as a worker's checkout leaves it in books.
        with psycopg.connect(books_database_url, autocommit=True) as books_db:
            books_db.execute("UPDATE books SET copies_available = 0 WHERE id = %s", [book["id"]])
        member = await make_member()
        body = (
            await client.post(
                "/v1/borrows?dry_run=true", json={"member_id": member["id"], "book_id": book["id"]}
            )
        ).json()
        assert body["due_at"] is None
        assert "hold" in body["outcome"]

    async def test_a_refusal_is_the_one_the_borrow_would_meet(
        self, client, make_member, make_lendable, db
    ) -> None:
        member = await make_member(max_loans=0)
        book = await make_lendable()
        body = {"member_id": member["id"], "book_id": book["id"]}
        before = snapshot(db)
        dry = assert_problem(await client.post("/v1/borrows?dry_run=true", json=body), 409)
        assert snapshot(db) == before
        real = assert_problem(await client.post("/v1/borrows", json=body), 409)
        assert (dry["error"], dry["rule"]) == (real["error"], real["rule"])

    async def test_a_block_appearing_after_the_dry_run_refuses_the_borrow(
        self, client, make_member, make_lendable, borrow_now, db
    ) -> None:
        child = await make_member(category="child")  # 1 overdue loan allowed
        first, second = await borrow_now(member=child), await borrow_now(member=child)
        shift_due(db, first["id"], days=2)
        book = await make_lendable()
        body = {"member_id": child["id"], "book_id": book["id"]}
        assert (await client.post("/v1/borrows?dry_run=true", json=body)).status_code == 200
        shift_due(db, second["id"], days=1)
        refused = assert_problem(await client.post("/v1/borrows", json=body), 403)
        assert refused["rule"]["name"] == "max_overdue_loans"


class TestRenewDryRun:
    async def test_answers_the_new_due_date_and_writes_nothing(
        self, client, borrow_now, db
    ) -> None:
        loan = await borrow_now()
        before = snapshot(db)
        response = await client.post(f"/v1/borrows/{loan['id']}/renew?dry_run=true")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["action"] == "renew"
        expected = datetime.fromisoformat(loan["due_at"]) + timedelta(days=14)
        assert datetime.fromisoformat(body["due_at"]) == expected
        assert snapshot(db) == before

    async def test_a_refusal_names_the_rule(self, client, make_member, borrow_now, db) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=3)
        before = snapshot(db)
        body = assert_problem(
            await client.post(f"/v1/borrows/{loan['id']}/renew?dry_run=true"), 409
        )
        assert body["rule"]["name"] == "renew_grace"
        assert (body["rule"]["limit"], body["rule"]["current"]) == (0, 3)
        assert snapshot(db) == before


class TestReturnDryRun:
    async def test_answers_the_fine_and_writes_nothing(self, client, borrow_now, db) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=2.5)
        before = snapshot(db)
        response = await client.post(f"/v1/borrows/{loan['id']}/return?dry_run=true")
        assert response.status_code == 200, response.text
        assert (response.json()["action"], response.json()["late_fee"]) == ("return", "0.75")
        assert snapshot(db) == before
        real = (await client.post(f"/v1/borrows/{loan['id']}/return")).json()
        assert real["late_fee"] == "0.75"
        assert len(outbox(db)) == len(before[1]) + 1


class TestHoldDryRun:
    async def test_answers_the_place_in_the_queue_and_writes_nothing(
        self, client, make_member, make_lendable, db
    ) -> None:
        book = await make_lendable()
        first, second = await make_member(), await make_member()
        await client.post("/v1/holds", json={"member_id": first["id"], "book_id": book["id"]})
        before = snapshot(db)
        response = await client.post(
            "/v1/holds?dry_run=true", json={"member_id": second["id"], "book_id": book["id"]}
        )
        assert response.status_code == 200, response.text
        assert (response.json()["action"], response.json()["position"]) == ("hold", 2)
        assert snapshot(db) == before


class TestCheckoutDryRun:
    async def test_answers_the_due_date_and_writes_nothing(
        self, client, make_member, make_lendable, internal, db
    ) -> None:
        member, book = await make_member(), await make_lendable()
        hold = (
            await client.post("/v1/holds", json={"member_id": member["id"], "book_id": book["id"]})
        ).json()
        await internal.post(f"/holds/{hold['id']}/ready")
        before = snapshot(db)
        response = await client.post(f"/v1/holds/{hold['id']}/checkout?dry_run=true")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["action"] == "checkout"
        assert near(body["due_at"], datetime.now().astimezone() + timedelta(days=14))
        assert snapshot(db) == before

    async def test_a_waiting_hold_is_refused_as_the_checkout_would_be(
        self, client, make_member, make_lendable, borrow_now, db
    ) -> None:
        book = await make_lendable(copies=1)
        await borrow_now(book=book)
        member = await make_member()
        hold = (
            await client.post("/v1/holds", json={"member_id": member["id"], "book_id": book["id"]})
        ).json()
        response = await client.post(f"/v1/holds/{hold['id']}/checkout?dry_run=true")
        assert assert_problem(response, 409)["error"] == "HOLD_NOT_READY"
