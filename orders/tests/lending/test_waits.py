"""How long will I wait? A waiting hold's `estimated_available_at`, checked against a
simulated queue, and the offer to buy the book instead when the wait is long."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from orders.lending.waits import estimate_available_at
from tests.conftest import assert_problem

NOW = datetime(2026, 12, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def simulate(*, due_days: list[int], ready_holds: int, ahead: int, loan_days: int) -> datetime:
    """The library, day by day: copies come back on their due day (or today, if overdue),
    each member at the head of the queue takes the first copy back and keeps it for the
    loan period; the day a copy reaches the member after `ahead` others."""
    back_on = [max(0, day) for day in due_days] + [loan_days] * ready_holds
    if not back_on:
        return NOW
    queue = ahead + 1
    for today in range(10_000):
        returned = back_on.count(today)
        back_on = [day for day in back_on if day != today]
        for _ in range(returned):
            queue -= 1
            if queue == 0:
                return NOW + today * DAY
            back_on.append(today + loan_days)
    raise AssertionError("the queue never moved")


@pytest.mark.parametrize("seed", range(200))
def test_the_estimate_is_what_a_simulated_queue_gives(seed: int) -> None:
    chance = random.Random(seed)
    due_days = [chance.randint(-5, 30) for _ in range(chance.randint(0, 4))]
    ready = chance.randint(0, 2)
    ahead = chance.randint(0, 8)
    loan_days = chance.choice([7, 14, 21])
    expected = simulate(due_days=due_days, ready_holds=ready, ahead=ahead, loan_days=loan_days)
    estimate = estimate_available_at(
        now=NOW,
        due_dates=[NOW + day * DAY for day in due_days],
        ready_holds=ready,
        ahead=ahead,
        loan_period=loan_days * DAY,
    )
    assert estimate == expected


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def due_at(db: psycopg.Connection[Any], borrow_id: int) -> datetime:
    row = db.execute("SELECT due_at FROM borrows WHERE id = %s", [borrow_id]).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


class TestWaitingHolds:
    async def test_each_hold_waits_one_loan_period_more_than_the_one_before(
        self, client, borrow_now, make_member, make_lendable, db
    ) -> None:
        book = await make_lendable(copies=1)
        loan = await borrow_now(book=book)
        holds = []
        for _ in range(3):
            member = await make_member()
            response = await client.post(
                "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
            )
            assert response.status_code == 201, response.text
            holds.append(response.json())
        due = due_at(db, loan["id"])
        for place, hold in enumerate(holds):
            got = (await client.get(f"/v1/holds/{hold['id']}")).json()
            assert got["position"] == place + 1
            assert parse(got["estimated_available_at"]) == due + place * 14 * DAY
        listed = (await client.get(f"/v1/holds?book_id={book['id']}")).json()["data"]
        assert {h["id"]: h["estimated_available_at"] for h in listed} == {
            h["id"]: (await client.get(f"/v1/holds/{h['id']}")).json()["estimated_available_at"]
            for h in holds
        }

    async def test_an_overdue_loan_counts_as_coming_back_now(
        self, client, borrow_now, make_member, make_lendable, db
    ) -> None:
        book = await make_lendable(copies=1)
        loan = await borrow_now(book=book)
        db.execute(
            "UPDATE borrows SET due_at = now() - interval '3 days' WHERE id = %s", [loan["id"]]
        )
        member = await make_member()
        before = datetime.now(UTC)
        hold = (
            await client.post("/v1/holds", json={"member_id": member["id"], "book_id": book["id"]})
        ).json()
        estimate = parse(hold["estimated_available_at"])
        assert before <= estimate <= datetime.now(UTC)

    async def test_a_long_wait_offers_the_book_for_sale_when_the_shop_has_it(
        self, client, borrow_now, make_member, make_lendable
    ) -> None:
        book = await make_lendable(copies=1, stock=3, price="12.50")
        await borrow_now(book=book)
        first, second = [await make_member() for _ in range(2)]
        waits = [
            (
                await client.post(
                    "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
                )
            ).json()
            for member in (first, second)
        ]
        # The first waits one loan period (14 days, not more than 14): no offer.
        assert waits[0]["buy_instead"] is None
        assert waits[1]["buy_instead"] == {
            "price": "12.50",
            "in_stock": 3,
            "order": {"items": [{"book_id": book["id"], "quantity": 1}]},
        }

    async def test_no_offer_for_a_book_the_shop_does_not_have(
        self, client, borrow_now, make_member, make_lendable
    ) -> None:
        book = await make_lendable(copies=1, stock=0)
        await borrow_now(book=book)
        for _ in range(2):
            member = await make_member()
            hold = (
                await client.post(
                    "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
                )
            ).json()
            assert hold["buy_instead"] is None

    async def test_a_hold_that_no_longer_waits_has_no_estimate(
        self, client, make_member, make_lendable, internal
    ) -> None:
        book = await make_lendable(copies=1)
        member = await make_member()
        hold = (
            await client.post("/v1/holds", json={"member_id": member["id"], "book_id": book["id"]})
        ).json()
        cancelled = (await client.delete(f"/v1/holds/{hold['id']}")).json()
        assert cancelled["estimated_available_at"] is None
        assert cancelled["buy_instead"] is None


class TestRefusalsOfferTheBook:
    """A book the member cannot borrow or hold: the refusal says what the shop sells."""

    OFFER = {"price": "12.50", "in_stock": 2}

    async def test_a_book_with_no_lendable_copies(self, client, make_member, make_book) -> None:
        book = await make_book(stock=2, price="12.50")
        member = await make_member()
        body = {"member_id": member["id"], "book_id": book["id"]}
        for path in ("/v1/borrows", "/v1/holds"):
            problem = assert_problem(await client.post(path, json=body), 409)
            assert problem["error"] == "BOOK_NOT_LENDABLE"
            assert problem["buy_instead"] == self.OFFER | {
                "order": {"items": [{"book_id": book["id"], "quantity": 1}]}
            }

    async def test_a_policy_that_lends_or_holds_it_not(
        self, client, make_member, make_lendable, make_policy
    ) -> None:
        reference = await make_lendable(format="reference", stock=2, price="12.50")
        audiobook = await make_lendable(format="audiobook", stock=2, price="12.50")
        await make_policy(member_category=None, item_type="reference", lendable=False)
        await make_policy(member_category=None, item_type="audiobook", holds_allowed=False)
        member = await make_member()
        refused = await client.post(
            "/v1/borrows", json={"member_id": member["id"], "book_id": reference["id"]}
        )
        assert assert_problem(refused, 409)["buy_instead"]["in_stock"] == 2
        refused = await client.post(
            "/v1/holds", json={"member_id": member["id"], "book_id": audiobook["id"]}
        )
        problem = assert_problem(refused, 409)
        assert problem["error"] == "HOLDS_NOT_ALLOWED"
        assert problem["buy_instead"]["order"]["items"][0]["book_id"] == audiobook["id"]

    async def test_no_offer_when_the_shop_has_none(self, client, make_member, make_book) -> None:
        book = await make_book(stock=0)
        member = await make_member()
        problem = assert_problem(
            await client.post(
                "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
            ),
            409,
        )
        assert "buy_instead" not in problem
