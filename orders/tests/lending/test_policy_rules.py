"""The lending paths run by the policy resolved for each member and book."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import assert_problem, row_counts
from tests.lending.conftest import shift_due


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def borrow(
    client: httpx.AsyncClient, member: dict[str, Any], book: dict[str, Any]
) -> httpx.Response:
    return await client.post("/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]})


class TestLoanPeriod:
    async def test_activation_and_checkout_use_the_policy_period(
        self, client, make_policy, make_member, make_lendable, internal
    ) -> None:
        await make_policy(loan_period_days=7)
        child, adult = await make_member(category="child"), await make_member()
        audiobook = await make_lendable(format="audiobook")
        loan = await internal.activate((await borrow(client, child, audiobook)).json()["id"])
        assert at(loan["due_at"]) - at(loan["borrowed_at"]) == timedelta(days=7)
        novel = await make_lendable()
        other = await internal.activate((await borrow(client, adult, novel)).json()["id"])
        assert at(other["due_at"]) - at(other["borrowed_at"]) == timedelta(days=14)


class TestNotLendable:
    async def test_refused_naming_the_policy_and_nothing_written(
        self, client, make_policy, make_member, make_lendable, db
    ) -> None:
        reference = await make_policy(member_category=None, item_type="reference", lendable=False)
        member, book = await make_member(), await make_lendable(format="reference")
        before = row_counts(db)
        body = assert_problem(await borrow(client, member, book), 409)
        assert body["rule"] == {
            "name": "not_lendable",
            "policy_id": reference["id"],
            "limit": None,
            "current": None,
        }
        assert row_counts(db) == before


class TestLoansOfAKind:
    async def test_the_policy_limit_refuses_one_more_of_the_kind_only(
        self, client, make_policy, make_member, make_lendable
    ) -> None:
        audio = await make_policy(member_category=None, max_loans=1)
        member = await make_member()
        first, second = (
            await make_lendable(format="audiobook"),
            await make_lendable(format="audiobook"),
        )
        assert (await borrow(client, member, first)).status_code == 201
        body = assert_problem(await borrow(client, member, second), 409)
        assert body["error"] == "LOAN_LIMIT_REACHED"
        assert body["rule"] == {
            "name": "max_loans_of_kind",
            "policy_id": audio["id"],
            "limit": 1,
            "current": 1,
        }
        assert (await borrow(client, member, await make_lendable())).status_code == 201
        member_now = (await client.get(f"/v1/members/{member['id']}")).json()
        assert member_now["loans_out"] == 2

    async def test_ten_borrows_of_the_kind_at_once_admit_exactly_the_limit(
        self, client, make_policy, make_member, make_lendable, db
    ) -> None:
        await make_policy(member_category=None, max_loans=2)
        member = await make_member(category="staff")
        books = [await make_lendable(format="audiobook") for _ in range(10)]
        responses = await asyncio.gather(*(borrow(client, member, b) for b in books))
        assert sorted(r.status_code for r in responses) == [201] * 2 + [409] * 8
        assert db.execute("SELECT count(*) FROM borrows").fetchone() == (2,)
        assert db.execute("SELECT loans_out FROM members").fetchone() == (2,)


class TestRenewal:
    async def test_the_policy_renewal_limit_is_named(
        self, client, make_policy, make_member, make_lendable, borrow_now
    ) -> None:
        strict = await make_policy(member_category=None, max_renewals=0)
        loan = await borrow_now(book=await make_lendable(format="audiobook"))
        body = assert_problem(await client.post(f"/v1/borrows/{loan['id']}/renew"), 409)
        assert body["rule"] == {
            "name": "max_renewals",
            "policy_id": strict["id"],
            "limit": 0,
            "current": 0,
        }

    async def test_renews_by_the_policy_period(
        self, client, make_policy, make_lendable, borrow_now
    ) -> None:
        await make_policy(member_category=None, loan_period_days=5, max_renewals=1)
        loan = await borrow_now(book=await make_lendable(format="audiobook"))
        renewed = (await client.post(f"/v1/borrows/{loan['id']}/renew")).json()
        assert at(renewed["due_at"]) - at(loan["due_at"]) == timedelta(days=5)


class TestFine:
    @pytest.mark.parametrize(
        ("days_late", "fee"),
        [(1.5, "0.00"), (3.5, "4.00"), (60, "14.50")],
        ids=["within-grace", "per-started-day", "capped-at-the-price"],
    )
    async def test_by_the_policy_with_grace_and_a_price_cap(
        self, client, make_policy, make_lendable, borrow_now, db, days_late, fee
    ) -> None:
        await make_policy(
            member_category=None, fine_per_day="1.00", fine_cap="book_price", grace_days=2
        )
        loan = await borrow_now(book=await make_lendable(format="audiobook", price="14.50"))
        shift_due(db, loan["id"], days=days_late)
        returned = (await client.post(f"/v1/borrows/{loan['id']}/return")).json()
        assert returned["late_fee"] == fee


class TestHolds:
    async def test_holds_not_allowed_is_refused_naming_the_policy(
        self, client, make_policy, make_member, make_lendable, db
    ) -> None:
        no_holds = await make_policy(member_category=None, holds_allowed=False)
        member, book = await make_member(), await make_lendable(format="audiobook")
        before = row_counts(db)
        response = await client.post(
            "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
        )
        body = assert_problem(response, 409)
        assert body["error"] == "HOLDS_NOT_ALLOWED"
        assert body["rule"]["policy_id"] == no_holds["id"]
        assert row_counts(db) == before

    async def test_no_copy_free_and_holds_not_allowed_rejects_the_borrow(
        self, client, make_policy, make_member, make_lendable, internal
    ) -> None:
        await make_policy(member_category=None, holds_allowed=False)
        member, book = await make_member(), await make_lendable(format="audiobook")
        pending = (await borrow(client, member, book)).json()
        answered = await internal.post(f"/borrows/{pending['id']}/hold")
        assert answered["status"] == "rejected"
        assert "does not let this member hold" in answered["rejection_reason"]

    async def test_the_pickup_window_is_the_policy_one(
        self, client, make_policy, make_member, make_lendable, internal, borrow_now
    ) -> None:
        await make_policy(member_category=None, hold_pickup_days=1)
        member, book = await make_member(), await make_lendable(format="audiobook")
        hold = (
            await client.post("/v1/holds", json={"member_id": member["id"], "book_id": book["id"]})
        ).json()
        ready = await internal.post(f"/holds/{hold['id']}/ready")
        assert at(ready["pickup_by"]) - at(ready["ready_at"]) == timedelta(days=1)
        # A returned copy handed over readies the next hold with its policy's window too.
        single = await make_lendable(copies=1, format="audiobook")
        loan = await borrow_now(book=single)
        waiting = (
            await client.post(
                "/v1/holds", json={"member_id": member["id"], "book_id": single["id"]}
            )
        ).json()
        handed = await internal.post(
            "/holds/hand-over", {"book_id": single["id"], "from_reference": f"borrow:{loan['id']}"}
        )
        assert handed["hold"]["id"] == waiting["id"]
        assert at(handed["hold"]["pickup_by"]) - at(handed["hold"]["ready_at"]) == timedelta(days=1)


class TestOverdueBlock:
    async def test_more_overdue_than_the_category_allows_blocks_borrow_renew_and_hold(
        self, client, make_member, make_lendable, borrow_now, db: psycopg.Connection
    ) -> None:
        child = await make_member(category="child")  # allows 1 overdue loan
        first = await borrow_now(member=child)
        second = await borrow_now(member=child)
        shift_due(db, first["id"], days=3)
        assert (await borrow(client, child, await make_lendable())).status_code == 201
        shift_due(db, second["id"], days=1)
        rule = {"name": "max_overdue_loans", "policy_id": None, "limit": 1, "current": 2}
        body = assert_problem(await borrow(client, child, await make_lendable()), 403)
        assert (body["error"], body["rule"]) == ("MEMBER_BLOCKED", rule)
        body = assert_problem(await client.post(f"/v1/borrows/{first['id']}/renew"), 403)
        assert body["rule"] == rule
        hold = {"member_id": child["id"], "book_id": (await make_lendable())["id"]}
        assert assert_problem(await client.post("/v1/holds", json=hold), 403)["rule"] == rule
