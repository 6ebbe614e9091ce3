"""Member accounts: a late return charges a fine to the member's ledger; payments and
waivers credit it; the balance is always the sum of the ledger and never below zero."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import assert_problem
from tests.lending.conftest import shift_due


def ledger_rows(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT member_id, kind, amount, borrow_id FROM ledger_entries ORDER BY id"
    ).fetchall()


def assert_balances_agree(db: psycopg.Connection[Any]) -> None:
    """Every member's balance is the sum of their ledger."""
    disagreeing = db.execute(
        "SELECT m.id, m.balance, coalesce(sum(e.amount), 0) FROM members m"
        " LEFT JOIN ledger_entries e ON e.member_id = m.id GROUP BY m.id"
        " HAVING m.balance <> coalesce(sum(e.amount), 0)"
    ).fetchall()
    assert disagreeing == []


async def pay(
    client: httpx.AsyncClient, member_id: int, amount: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"amount": amount, "reason": "Paid in cash at the desk"}
    return await client.post(f"/v1/members/{member_id}/payments", json=body, headers=headers)


class TestFines:
    async def test_a_late_return_charges_its_fee_to_the_members_ledger(
        self, client, owing, db
    ) -> None:
        member, returned = await owing(days_late=4)
        assert returned["late_fee"] == "1.00"
        assert member["balance"] == "1.00"

        response = await client.get(f"/v1/members/{member['id']}/ledger")
        assert response.status_code == 200, response.text
        statement = response.json()
        assert statement["balance"] == "1.00"
        assert statement["total"] == 1
        (entry,) = statement["data"]
        assert entry["kind"] == "fine"
        assert entry["amount"] == "1.00"
        assert entry["balance_after"] == "1.00"
        assert entry["borrow_id"] == returned["id"]
        assert entry["reason"].startswith(f"Late return of “{returned['book_title']}”, due ")
        assert entry["recorded_by"] is None
        assert_balances_agree(db)

    async def test_an_on_time_return_charges_nothing(self, client, borrow_now, db) -> None:
        loan = await borrow_now()
        await client.post(f"/v1/borrows/{loan['id']}/return")
        await client.post(f"/v1/borrows/{loan['id']}/return")  # a repeat changes nothing
        assert ledger_rows(db) == []
        member = (await client.get(f"/v1/members/{loan['member_id']}")).json()
        assert member["balance"] == "0.00"

    async def test_a_repeated_late_return_charges_once(self, client, borrow_now, db) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=1.5)
        await asyncio.gather(*(client.post(f"/v1/borrows/{loan['id']}/return") for _ in range(4)))
        assert ledger_rows(db) == [(loan["member_id"], "fine", Decimal("0.50"), loan["id"])]
        assert_balances_agree(db)


class TestPayments:
    async def test_a_payment_lowers_the_balance_and_shows_who_recorded_it(
        self, client, owing, db, admin_key
    ) -> None:
        member, _ = await owing(days_late=4)
        response = await pay(client, member["id"], "0.40")
        assert response.status_code == 201, response.text
        entry = response.json()
        assert (entry["kind"], entry["amount"], entry["balance_after"]) == (
            "payment",
            "-0.40",
            "0.60",
        )
        assert entry["reason"] == "Paid in cash at the desk"
        assert entry["recorded_by"] == f"admin key {admin_key.split('_')[1]}"

        statement = (await client.get(f"/v1/members/{member['id']}/ledger")).json()
        assert statement["balance"] == "0.60"
        assert [(e["kind"], e["balance_after"]) for e in statement["data"]] == [
            ("payment", "0.60"),
            ("fine", "1.00"),
        ]
        assert (await client.get(f"/v1/members/{member['id']}")).json()["balance"] == "0.60"
        assert_balances_agree(db)

    async def test_a_waiver_can_name_the_loan_it_forgives(self, client, owing, db) -> None:
        member, returned = await owing(days_late=4)
        response = await client.post(
            f"/v1/members/{member['id']}/waivers",
            json={
                "amount": "1.00",
                "reason": "Book returned to the wrong branch",
                "borrow_id": returned["id"],
            },
        )
        assert response.status_code == 201, response.text
        assert (response.json()["kind"], response.json()["balance_after"]) == ("waiver", "0.00")
        assert_balances_agree(db)

    async def test_more_than_the_balance_is_refused_and_nothing_written(
        self, client, owing, db
    ) -> None:
        member, _ = await owing(days_late=4)
        body = assert_problem(await pay(client, member["id"], "1.01"), 409)
        assert body["error"] == "CREDIT_EXCEEDS_BALANCE"
        assert "owes (1.00)" in body["detail"]
        assert len(ledger_rows(db)) == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"amount": "0.00", "reason": "x"}, "amount"),
            ({"amount": "-1.00", "reason": "x"}, "amount"),
            ({"amount": "1.005", "reason": "x"}, "amount"),
            ({"amount": 1.0, "reason": "x"}, "amount"),
            ({"amount": "1.00"}, "reason"),
            ({"amount": "1.00", "reason": "   "}, "reason"),
            ({"amount": "1.00", "reason": "x", "method": "card"}, "method"),
        ],
    )
    async def test_a_malformed_payment_is_a_422_and_nothing_written(
        self, client, owing, db, body, field
    ) -> None:
        member, _ = await owing(days_late=4)
        response = await client.post(f"/v1/members/{member['id']}/payments", json=body)
        problem = assert_problem(response, 422)
        assert field in response.text, problem
        assert len(ledger_rows(db)) == 1

    async def test_a_loan_of_another_member_is_a_422(self, client, owing, borrow_now, db) -> None:
        member, _ = await owing(days_late=4)
        other = await borrow_now()
        response = await client.post(
            f"/v1/members/{member['id']}/waivers",
            json={"amount": "1.00", "reason": "x", "borrow_id": other["id"]},
        )
        assert assert_problem(response, 422)["error"] == "UNKNOWN_LOAN"
        assert len(ledger_rows(db)) == 1

    async def test_an_unknown_member_is_a_404(self, client) -> None:
        assert_problem(await pay(client, 987_654, "1.00"), 404)
        assert_problem(await client.get("/v1/members/987654/ledger"), 404)

    async def test_a_shop_key_may_not_record_payments(self, shop, client, owing, db) -> None:
        member, _ = await owing(days_late=4)
        assert_problem(await pay(shop, member["id"], "1.00"), 403)
        assert_problem(await shop.get(f"/v1/members/{member['id']}/ledger"), 403)
        assert len(ledger_rows(db)) == 1


class TestRaces:
    async def test_two_desks_taking_the_same_debt_record_it_once(self, client, owing, db) -> None:
        member, _ = await owing(days_late=8)
        responses = await asyncio.gather(*(pay(client, member["id"], "2.00") for _ in range(2)))
        assert sorted(r.status_code for r in responses) == [201, 409]
        assert (await client.get(f"/v1/members/{member['id']}")).json()["balance"] == "0.00"
        assert_balances_agree(db)

    async def test_many_small_payments_at_once_never_pay_more_than_owed(
        self, client, owing, db
    ) -> None:
        member, _ = await owing(days_late=8)  # owes 2.00
        responses = await asyncio.gather(*(pay(client, member["id"], "0.50") for _ in range(7)))
        assert sorted(r.status_code for r in responses) == [201] * 4 + [409] * 3
        assert (await client.get(f"/v1/members/{member['id']}")).json()["balance"] == "0.00"
        assert_balances_agree(db)

    async def test_a_retried_payment_with_its_key_is_recorded_once(self, client, owing, db) -> None:
        member, _ = await owing(days_late=8)
        key = {"Idempotency-Key": "payment-1"}
        first, again = await asyncio.gather(
            pay(client, member["id"], "1.00", headers=key),
            pay(client, member["id"], "1.00", headers=key),
        )
        statuses = sorted([first.status_code, again.status_code])
        # The second either replays the first or finds it still in flight (409, retry).
        assert statuses in ([201, 201], [201, 409]), (first.text, again.text)
        replay = await pay(client, member["id"], "1.00", headers=key)
        assert replay.status_code == 201
        assert replay.json() == next(r for r in (first, again) if r.status_code == 201).json()
        assert (await client.get(f"/v1/members/{member['id']}")).json()["balance"] == "1.00"
        other_body = await pay(client, member["id"], "0.50", headers=key)
        assert_problem(other_body, 422)
        assert_balances_agree(db)


class TestLedgerIntegrity:
    async def test_entries_are_never_changed_or_deleted(self, owing, db) -> None:
        await owing(days_late=4)
        for statement in ("UPDATE ledger_entries SET amount = 0.01", "DELETE FROM ledger_entries"):
            with pytest.raises(psycopg.errors.RestrictViolation):
                db.execute(statement)
        assert len(ledger_rows(db)) == 1

    async def test_the_balance_cannot_go_below_zero_even_by_hand(self, owing, db) -> None:
        member, _ = await owing(days_late=4)
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(
                "INSERT INTO ledger_entries (member_id, kind, amount, reason)"
                " VALUES (%s, 'payment', -5, 'x')",
                [member["id"]],
            )

    async def test_the_statement_pages_with_links(self, client, owing) -> None:
        member, _ = await owing(days_late=8)
        for _ in range(3):
            assert (await pay(client, member["id"], "0.10")).status_code == 201
        response = await client.get(f"/v1/members/{member['id']}/ledger?limit=2&offset=1")
        page = response.json()
        assert response.headers["x-total-count"] == "4"
        assert 'rel="next"' in response.headers["link"]
        assert [e["balance_after"] for e in page["data"]] == ["1.80", "1.90"]
        assert page["balance"] == "1.70"


class TestBalanceBlock:
    async def test_owing_more_than_the_category_allows_blocks_and_paying_lifts_it(
        self, client, owing, make_lendable, db
    ) -> None:
        await client.patch("/v1/member-categories/adult", json={"max_balance": "1.00"})
        member, _ = await owing(days_late=8)  # owes 2.00
        book = await make_lendable()
        borrow = {"member_id": member["id"], "book_id": book["id"]}

        for attempt in (
            client.post("/v1/borrows", json=borrow),
            client.post("/v1/holds", json=borrow),
        ):
            problem = assert_problem(await attempt, 403)
            assert problem["error"] == "MEMBER_BLOCKED"
            assert problem["rule"] == {
                "name": "max_balance",
                "policy_id": None,
                "limit": "1.00",
                "current": "2.00",
            }
            assert "owes 2.00 in fines" in problem["detail"]
        dry = await client.post("/v1/borrows?dry_run=true", json=borrow)
        assert dry.status_code == 403, dry.text

        assert (await pay(client, member["id"], "1.00")).status_code == 201
        response = await client.post("/v1/borrows", json=borrow)
        assert response.status_code == 201, response.text  # owes 1.00: at the limit, not above
        assert_balances_agree(db)
