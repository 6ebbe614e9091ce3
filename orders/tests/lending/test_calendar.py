"""The calendar: closed days, and due dates that move past them."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import psycopg
import pytest

from orders.lending import closed_days
from orders.lending.models import Policy
from orders.lending.policy import LendingPolicy
from tests.conftest import assert_problem
from tests.lending.conftest import events, shift_due


def next_open(db: psycopg.Connection[Any], due: str) -> datetime:
    row = db.execute("SELECT next_open_day(%s::timestamptz)", [due]).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def close(client: httpx.AsyncClient, *days: date) -> None:
    for day in days:
        response = await client.post("/v1/calendar/closed-days", json={"day": day.isoformat()})
        assert response.status_code == 201, response.text


class TestClosedDays:
    async def test_close_list_and_reopen(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/calendar/closed-days", json={"day": "2027-01-01", "reason": " New Year "}
        )
        assert response.status_code == 201, response.text
        assert response.headers["location"] == "/v1/calendar/closed-days/2027-01-01"
        assert response.json()["reason"] == "New Year"
        await close(client, date(2026, 12, 25))
        listed = (await client.get("/v1/calendar/closed-days")).json()
        assert [d["day"] for d in listed] == ["2026-12-25", "2027-01-01"]
        later = (await client.get("/v1/calendar/closed-days?since=2026-12-26")).json()
        assert [d["day"] for d in later] == ["2027-01-01"]
        assert (await client.delete("/v1/calendar/closed-days/2027-01-01")).status_code == 204
        assert_problem(await client.delete("/v1/calendar/closed-days/2027-01-01"), 404)

    async def test_a_day_closed_twice_is_a_409(self, client: httpx.AsyncClient) -> None:
        await close(client, date(2027, 1, 1))
        response = await client.post("/v1/calendar/closed-days", json={"day": "2027-01-01"})
        assert assert_problem(response, 409)["error"] == "CLOSED_DAY_EXISTS"

    async def test_not_a_date_is_a_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/calendar/closed-days", json={"day": "2027-02-30"})
        assert_problem(response, 422)

    async def test_needs_an_admin_key_to_close(self, shop: httpx.AsyncClient) -> None:
        response = await shop.post("/v1/calendar/closed-days", json={"day": "2027-01-01"})
        assert_problem(response, 403)


class TestNextOpenDay:
    @pytest.mark.parametrize(
        ("closed", "due", "moved"),
        [
            ([], "2027-01-31T10:00:00Z", "2027-01-31T10:00:00Z"),
            (["2027-01-31"], "2027-01-31T10:00:00Z", "2027-02-01T10:00:00Z"),
            (["2027-01-31", "2027-02-01"], "2027-01-31T10:00:00Z", "2027-02-02T10:00:00Z"),
            (["2028-02-28", "2028-02-29"], "2028-02-28T23:30:00Z", "2028-03-01T23:30:00Z"),
            (["2026-12-31", "2027-01-01"], "2026-12-31T08:00:00Z", "2027-01-02T08:00:00Z"),
            (["2027-04-30"], "2027-04-29T12:00:00Z", "2027-04-29T12:00:00Z"),
        ],
        ids=["open", "month-end", "across-month-end", "leap-day", "year-end", "day-before"],
    )
    async def test_moves_past_closed_days_across_month_ends(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection,
        closed: list[str],
        due: str,
        moved: str,
    ) -> None:
        await close(client, *(date.fromisoformat(day) for day in closed))
        assert next_open(db, due) == datetime.fromisoformat(moved)


class TestDueDates:
    async def test_a_new_loan_due_on_closed_days_is_due_the_next_open_day(
        self, client: httpx.AsyncClient, borrow_now, make_member, make_lendable
    ) -> None:
        due_day = (datetime.now(UTC) + timedelta(days=14)).date()
        await close(client, due_day, due_day + timedelta(days=1))
        member, book = await make_member(), await make_lendable()
        dry = await client.post(
            "/v1/borrows?dry_run=true", json={"member_id": member["id"], "book_id": book["id"]}
        )
        assert datetime.fromisoformat(dry.json()["due_at"]).date() == due_day + timedelta(days=2)
        loan = await borrow_now(member=member, book=book)
        borrowed, due = (datetime.fromisoformat(loan[k]) for k in ("borrowed_at", "due_at"))
        assert due - borrowed == timedelta(days=16)

    async def test_a_renewal_due_on_a_closed_day_moves_too(
        self, client: httpx.AsyncClient, borrow_now
    ) -> None:
        loan = await borrow_now()
        renewed_day = datetime.fromisoformat(loan["due_at"]) + timedelta(days=14)
        await close(client, renewed_day.date())
        renewed = (await client.post(f"/v1/borrows/{loan['id']}/renew")).json()
        assert datetime.fromisoformat(renewed["due_at"]) == renewed_day + timedelta(days=1)


class TestFinesOnClosedDays:
    def test_days_starting_on_a_closed_day_are_not_counted_across_a_month_end(self) -> None:
        due = datetime(2026, 1, 30, 15, 0, tzinfo=UTC)
        returned = due + timedelta(days=4, hours=1)  # 5 started days: Jan 30 .. Feb 3
        closed = {date(2026, 1, 31), date(2026, 2, 1), date(2026, 3, 1)}
        assert LendingPolicy.days_late(due_at=due, until=returned, closed_days=()) == 5
        assert LendingPolicy.days_late(due_at=due, until=returned, closed_days=closed) == 3

    def test_the_grace_days_count_open_days_only(self) -> None:
        policy = LendingPolicy.of(
            Policy(
                id=1,
                lendable=True,
                loan_period_days=14,
                max_renewals=0,
                renew_grace_days=0,
                max_loans=None,
                fine_per_day=Decimal("1.00"),
                fine_cap=None,
                grace_days=2,
                holds_allowed=True,
                hold_pickup_days=3,
                lost_after_days=None,
                lost_processing_fee=Decimal("0"),
            )
        )
        due = datetime(2026, 2, 27, 12, 0, tzinfo=UTC)
        returned = due + timedelta(days=3)  # Feb 27, Feb 28, Mar 1
        fee = partial(policy.late_fee, due_at=due, returned_at=returned, book_price=None)
        assert fee() == Decimal("3.00")
        assert fee(closed_days={date(2026, 2, 28)}) == Decimal("0.00")  # 2 days: in grace

    async def test_a_late_return_is_not_fined_for_the_closed_days(
        self, client: httpx.AsyncClient, borrow_now: Any, db: psycopg.Connection[Any]
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=3.5)  # 4 started days, the middle two closed
        due = datetime.fromisoformat(
            (await client.get(f"/v1/borrows/{loan['id']}")).json()["due_at"]
        )
        await close(client, (due + timedelta(days=1)).date(), (due + timedelta(days=2)).date())
        dry = (await client.post(f"/v1/borrows/{loan['id']}/return?dry_run=true")).json()
        returned = (await client.post(f"/v1/borrows/{loan['id']}/return")).json()
        assert dry["late_fee"] == returned["late_fee"] == "0.50"


def open_days_on(db: psycopg.Connection[Any], start: str, days: int) -> datetime:
    row = db.execute("SELECT add_open_days(%s::timestamptz, %s)", [start, days]).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


class TestAddOpenDays:
    @pytest.mark.parametrize(
        ("closed", "start", "days", "end"),
        [
            ([], "2027-01-29T10:00:00Z", 3, "2027-02-01T10:00:00Z"),
            (["2027-01-31", "2027-02-01"], "2027-01-29T10:00:00Z", 3, "2027-02-03T10:00:00Z"),
            (["2027-01-30"], "2027-01-29T10:00:00Z", 1, "2027-01-31T10:00:00Z"),
            # The day it starts on being closed changes nothing: the window starts after it.
            (["2027-01-29"], "2027-01-29T10:00:00Z", 2, "2027-01-31T10:00:00Z"),
            (["2028-02-29", "2028-03-01"], "2028-02-28T23:30:00Z", 2, "2028-03-03T23:30:00Z"),
            (["2026-12-31", "2027-01-01"], "2026-12-30T08:00:00Z", 3, "2027-01-04T08:00:00Z"),
        ],
        ids=["open", "across-month-end", "one-day", "closed-start", "leap-day", "year-end"],
    )
    async def test_counts_open_days_only(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection,
        closed: list[str],
        start: str,
        days: int,
        end: str,
    ) -> None:
        await close(client, *(date.fromisoformat(day) for day in closed))
        assert open_days_on(db, start, days) == datetime.fromisoformat(end)


class TestPickupWindow:
    async def test_a_ready_hold_waits_its_pickup_days_in_open_days_across_the_month_end(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection,
        make_member,
        make_lendable,
        internal,
    ) -> None:
        """The window reaches past the end of this month, whose last day and the next
        month's first are closed: it ends two days later than the same count of days."""
        today = datetime.now(UTC).date()
        # The end of the month tomorrow is in (so never today).
        tomorrow = today + timedelta(days=1)
        month_end = (tomorrow.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(
            days=1
        )
        pickup_days = (month_end - today).days + 2
        db.execute("UPDATE lending_policies SET hold_pickup_days = %s", [pickup_days])
        await close(client, month_end, month_end + timedelta(days=1))
        member, book = await make_member(), await make_lendable()
        response = await client.post(
            "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
        )
        hold = response.json()
        ready = await internal.post(f"/holds/{hold['id']}/ready")
        ready_at, pickup_by = (datetime.fromisoformat(ready[k]) for k in ("ready_at", "pickup_by"))
        assert pickup_by - ready_at == timedelta(days=pickup_days + 2)
        assert pickup_by.date() > month_end + timedelta(days=1)

    async def test_a_copy_handed_over_gets_the_same_window(
        self, client: httpx.AsyncClient, make_member, make_lendable, internal
    ) -> None:
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        await close(client, tomorrow, tomorrow + timedelta(days=2))
        member, book = await make_member(), await make_lendable()
        await client.post("/v1/holds", json={"member_id": member["id"], "book_id": book["id"]})
        handed = await internal.post(
            "/holds/hand-over", {"book_id": book["id"], "from_reference": "borrow:5"}
        )
        ready_at, pickup_by = (
            datetime.fromisoformat(handed["hold"][k]) for k in ("ready_at", "pickup_by")
        )
        # Three open days: the day after tomorrow, and the two after the second closed day.
        assert pickup_by - ready_at == timedelta(days=5)


def set_due(db: psycopg.Connection[Any], borrow_id: int, due: datetime) -> None:
    db.execute("UPDATE borrows SET due_at = %s WHERE id = %s", [due, borrow_id])


def due_of(db: psycopg.Connection[Any], borrow_id: int) -> datetime:
    row = db.execute("SELECT due_at FROM borrows WHERE id = %s", [borrow_id]).fetchone()
    assert row is not None
    return row[0].astimezone(UTC)  # type: ignore[no-any-return]


def a_closing_over_a_month_end() -> tuple[date, date, date]:
    """(first day, the month's last day, last day): a closing from today or later that
    takes in a month end and two days of the next month."""
    month_end = (date.today().replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(
        days=1
    )
    if month_end <= date.today():  # today is the month's last day: take the next one
        month_end = (month_end + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return max(date.today(), month_end - timedelta(days=1)), month_end, month_end + timedelta(2)


class TestClosings:
    async def test_a_closing_moves_the_loans_and_pickups_on_its_days(
        self, client, borrow_now, make_lendable, make_member, internal, db
    ) -> None:
        first, month_end, last = a_closing_over_a_month_end()
        on_month_end = await borrow_now()
        set_due(db, on_month_end["id"], datetime.combine(month_end, time(10), UTC))
        on_last = await borrow_now()
        set_due(db, on_last["id"], datetime.combine(last, time(23, 59), UTC))
        after = await borrow_now()
        after_due = datetime.combine(last + timedelta(days=1), time(0, 1), UTC)
        set_due(db, after["id"], after_due)
        hold = await client.post(
            "/v1/holds",
            json={
                "member_id": (await make_member())["id"],
                "book_id": (await make_lendable())["id"],
            },
        )
        await internal.post(f"/holds/{hold.json()['id']}/ready")
        db.execute(
            "UPDATE holds SET pickup_by = %s WHERE id = %s",
            [datetime.combine(month_end, time(18), UTC), hold.json()["id"]],
        )

        response = await client.post(
            "/v1/calendar/closings",
            json={"first_day": first.isoformat(), "last_day": last.isoformat(), "reason": "Flood"},
        )

        assert response.status_code == 202, response.text
        closing = response.json()
        assert response.headers["location"] == f"/v1/calendar/closings/{closing['id']}"
        assert closing["status"] == "moving"
        closed = (await client.get(f"/v1/calendar/closed-days?since={first}")).json()
        assert [d["day"] for d in closed][: (last - first).days + 1] == [
            (first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)
        ]
        assert events(db, "closing.announced") == [{"closing_id": closing["id"]}]

        moved = await internal.post(f"/closings/{closing['id']}/move")

        assert moved["status"] == "done"
        assert (moved["loans_moved"], moved["holds_moved"]) == (2, 1)
        next_open = last + timedelta(days=1)
        assert due_of(db, on_month_end["id"]) == datetime.combine(next_open, time(10), UTC)
        assert due_of(db, on_last["id"]) == datetime.combine(next_open, time(23, 59), UTC)
        assert due_of(db, after["id"]) == after_due
        pickup = (await client.get(f"/v1/holds/{hold.json()['id']}")).json()["pickup_by"]
        assert datetime.fromisoformat(pickup) == datetime.combine(next_open, time(18), UTC)
        again = await internal.post(f"/closings/{closing['id']}/move")
        assert (again["loans_moved"], again["holds_moved"]) == (2, 1)
        shown = (await client.get(f"/v1/calendar/closings/{closing['id']}")).json()
        assert shown == moved
        listed = await client.get("/v1/calendar/closings")
        assert listed.headers["x-total-count"] == "1"
        assert listed.json()["data"] == [moved]

    async def test_batches_count_each_move_once_even_when_jobs_race(
        self, client, borrow_now, internal, db, monkeypatch
    ) -> None:
        monkeypatch.setattr(closed_days, "MOVE_BATCH", 2)
        first = date.today() + timedelta(days=3)
        loans = [await borrow_now() for _ in range(5)]
        for loan in loans:
            set_due(db, loan["id"], datetime.combine(first, time(12), UTC))
        closing = (
            await client.post(
                "/v1/calendar/closings",
                json={"first_day": str(first), "last_day": str(first), "reason": "Strike"},
            )
        ).json()
        path = f"/closings/{closing['id']}/move"
        rounds = await asyncio.gather(*(internal.post(path) for _ in range(6)))
        assert rounds[-1]["status"] == "done" or any(r["status"] == "done" for r in rounds)
        final = (await client.get(f"/v1/calendar/closings/{closing['id']}")).json()
        assert final["loans_moved"] == 5
        assert all(due_of(db, loan["id"]).date() == first + timedelta(days=1) for loan in loans)

    @pytest.mark.parametrize(
        ("first", "last", "field"),
        [(-1, 0, "first_day"), (2, 1, "last_day"), (0, 366, "last_day")],
    )
    async def test_bad_days_are_a_422_and_close_nothing(
        self, client, db, first: int, last: int, field: str
    ) -> None:
        today = date.today()
        body = {
            "first_day": str(today + timedelta(days=first)),
            "last_day": str(today + timedelta(days=last)),
            "reason": "Flood",
        }
        problem = assert_problem(await client.post("/v1/calendar/closings", json=body), 422)
        assert problem["errors"][0]["field"] == field
        assert db.execute("SELECT count(*) FROM closed_days").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM closings").fetchone() == (0,)

    async def test_a_blank_reason_is_a_422(self, client) -> None:
        body = {"first_day": str(date.today()), "last_day": str(date.today()), "reason": " "}
        assert_problem(await client.post("/v1/calendar/closings", json=body), 422)

    async def test_needs_an_admin_key(self, shop: httpx.AsyncClient) -> None:
        body = {"first_day": str(date.today()), "last_day": str(date.today()), "reason": "x"}
        assert_problem(await shop.post("/v1/calendar/closings", json=body), 403)

    async def test_an_unknown_closing_is_a_404(self, client, internal) -> None:
        assert_problem(await client.get("/v1/calendar/closings/99"), 404)
        await internal.post("/closings/99/move", status=404)
