"""Lost items: the sweep declares a loan lost once it is overdue past its policy's
`lost_after_days`, charging the fine so far, the book's price and the processing fee; a
lost copy that comes back refunds the price and is passed on like any return."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.lending.conftest import events, shift_due
from tests.lending.test_ledger import assert_balances_agree, ledger_rows, pay


@pytest.fixture
def losing_policy(db: psycopg.Connection[Any]) -> None:
    """The default policy declares loans lost 30 days overdue, with a 5.00 fee."""
    db.execute(
        "UPDATE lending_policies SET lost_after_days = 30, lost_processing_fee = 5.00"
        " WHERE member_category IS NULL AND item_type IS NULL"
    )


def loans_out(db: psycopg.Connection[Any], member_id: int) -> int:
    row = db.execute("SELECT loans_out FROM members WHERE id = %s", [member_id]).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.usefixtures("losing_policy")
class TestDeclaredLost:
    async def test_a_loan_overdue_past_its_policy_is_lost_and_charged(
        self, client, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=30.5)
        assert loans_out(db, loan["member_id"]) == 1

        sweep = await internal.post("/library/sweep")

        assert sweep["lost_loans"] == 1
        lost = (await client.get(f"/v1/borrows/{loan['id']}")).json()
        assert lost["status"] == "lost"
        assert lost["lost_at"] is not None
        # 31 started days at 0.25 (under the 10.00 cap), the book's price, the fee.
        assert lost["late_fee"] == "7.75"
        assert ledger_rows(db) == [
            (loan["member_id"], "fine", Decimal("7.75"), loan["id"]),
            (loan["member_id"], "lost_item", Decimal("19.99"), loan["id"]),
            (loan["member_id"], "processing_fee", Decimal("5.00"), loan["id"]),
        ]
        member = (await client.get(f"/v1/members/{loan['member_id']}")).json()
        assert member["balance"] == "32.74"
        # A lost loan no longer counts against the member's limit.
        assert loans_out(db, loan["member_id"]) == 0
        assert_balances_agree(db)
        listed = (await client.get("/v1/borrows?status=lost")).json()
        assert [b["id"] for b in listed["data"]] == [loan["id"]]

    async def test_a_loan_overdue_less_than_that_stays_out(
        self, client, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=29.5)
        assert (await internal.post("/library/sweep"))["lost_loans"] == 0
        assert (await client.get(f"/v1/borrows/{loan['id']}")).json()["status"] == "active"
        assert ledger_rows(db) == []

    async def test_a_policy_that_never_loses_loses_nothing(
        self, client, borrow_now, internal, db
    ) -> None:
        db.execute("UPDATE lending_policies SET lost_after_days = NULL")
        loan = await borrow_now()
        shift_due(db, loan["id"], days=400)
        assert (await internal.post("/library/sweep"))["lost_loans"] == 0
        assert (await client.get(f"/v1/borrows/{loan['id']}")).json()["status"] == "active"

    async def test_the_policy_of_the_loan_decides(
        self, client, borrow_now, make_lendable, internal, db
    ) -> None:
        await client.post(
            "/v1/policies",
            json={
                "item_type": "reference",
                "loan_period_days": 7,
                "max_renewals": 0,
                "fine_per_day": "1.00",
                "fine_cap": "book_price",
                "hold_pickup_days": 2,
                "lost_after_days": 10,
            },
        )
        reference = await borrow_now(book=await make_lendable(format="reference"))
        ordinary = await borrow_now()
        for loan in (reference, ordinary):
            shift_due(db, loan["id"], days=12)
        assert (await internal.post("/library/sweep"))["lost_loans"] == 1
        statuses = {
            loan["id"]: (await client.get(f"/v1/borrows/{loan['id']}")).json()["status"]
            for loan in (reference, ordinary)
        }
        assert statuses == {reference["id"]: "lost", ordinary["id"]: "active"}
        # Its fine is capped at the book's price, no processing fee.
        assert ledger_rows(db) == [
            (reference["member_id"], "fine", Decimal("13.00"), reference["id"]),
            (reference["member_id"], "lost_item", Decimal("19.99"), reference["id"]),
        ]

    async def test_sweeps_running_at_once_charge_each_loan_once(
        self, client, borrow_now, internal, db
    ) -> None:
        loans = [await borrow_now() for _ in range(6)]
        for loan in loans:
            shift_due(db, loan["id"], days=40)
        sweeps = await asyncio.gather(*(internal.post("/library/sweep") for _ in range(4)))
        assert sum(sweep["lost_loans"] for sweep in sweeps) == 6
        kinds = db.execute(
            "SELECT kind, count(*) FROM ledger_entries GROUP BY kind ORDER BY kind"
        ).fetchall()
        assert kinds == [("fine", 6), ("lost_item", 6), ("processing_fee", 6)]
        assert (await internal.post("/library/sweep"))["lost_loans"] == 0
        assert_balances_agree(db)

    async def test_a_lost_loan_cannot_be_renewed(self, client, borrow_now, internal, db) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=30.5)
        await internal.post("/library/sweep")
        response = await client.post(f"/v1/borrows/{loan['id']}/renew")
        assert response.status_code == 409, response.text
        assert response.json()["rule"]["name"] == "loan_status"


@pytest.mark.usefixtures("losing_policy")
class TestLostAndFound:
    async def test_a_lost_copy_returned_refunds_its_price_and_goes_back(
        self, client, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=30.5)
        await internal.post("/library/sweep")
        dry = await client.post(f"/v1/borrows/{loan['id']}/return?dry_run=true")
        assert dry.status_code == 200, dry.text
        assert "replacement charge is refunded" in dry.json()["outcome"]

        returned = await client.post(f"/v1/borrows/{loan['id']}/return")

        assert returned.status_code == 200, returned.text
        assert returned.json()["status"] == "returned"
        assert returned.json()["lost_at"] is not None
        assert ledger_rows(db)[-1] == (loan["member_id"], "refund", Decimal("-19.99"), loan["id"])
        member = (await client.get(f"/v1/members/{loan['member_id']}")).json()
        assert member["balance"] == "12.75"  # the fine and the processing fee stay
        assert loans_out(db, loan["member_id"]) == 0  # not given back twice
        freed = events(db, "copy.freed")
        assert freed[-1]["reference"] == f"borrow:{loan['id']}"
        assert_balances_agree(db)

    async def test_returns_of_a_lost_copy_at_once_refund_once(
        self, client, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=30.5)
        await internal.post("/library/sweep")
        await asyncio.gather(*(client.post(f"/v1/borrows/{loan['id']}/return") for _ in range(4)))
        refunds = [row for row in ledger_rows(db) if row[1] == "refund"]
        assert refunds == [(loan["member_id"], "refund", Decimal("-19.99"), loan["id"])]
        assert len(events(db, "copy.freed")) == 1

    async def test_a_paid_replacement_returned_leaves_the_member_in_credit(
        self, client, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=30.5)
        await internal.post("/library/sweep")
        assert (await pay(client, loan["member_id"], "32.74")).status_code == 201
        await client.post(f"/v1/borrows/{loan['id']}/return")
        member = (await client.get(f"/v1/members/{loan['member_id']}")).json()
        assert member["balance"] == "-19.99"
        # In credit, nothing more can be paid; the credit pays the next charge.
        response = await pay(client, loan["member_id"], "0.01")
        assert response.status_code == 409, response.text
        assert_balances_agree(db)

    async def test_a_payment_still_cannot_take_the_balance_below_zero_by_hand(
        self, client, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=30.5)
        await internal.post("/library/sweep")
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(
                "INSERT INTO ledger_entries (member_id, kind, amount, reason)"
                " VALUES (%s, 'payment', -40, 'x')",
                [loan["member_id"]],
            )
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.execute(
                "INSERT INTO ledger_entries (member_id, kind, amount, borrow_id, reason)"
                " VALUES (%s, 'lost_item', 1, %s, 'again')",
                [loan["member_id"], loan["id"]],
            )
