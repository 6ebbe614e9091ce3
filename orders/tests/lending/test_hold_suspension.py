"""Suspended holds: they keep their place in the queue, copies pass them by, and they
resume by hand or on their date (the library sweep)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import assert_problem, row_counts
from tests.lending.conftest import events
from tests.lending.test_holds import place


def tomorrow() -> str:
    return (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


async def suspend(client, hold, body=None) -> dict:  # type: ignore[no-untyped-def]
    response = await client.post(f"/v1/holds/{hold['id']}/suspend", json=body or {})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


class TestSuspendHold:
    async def test_suspended_hold_keeps_its_place_and_the_estimates_pass_it_by(
        self, client, make_member, make_lendable, borrow_now
    ):
        book = await make_lendable(copies=1)
        loan = await borrow_now(book=book)
        first = await place(client, await make_member(), book)
        second = await place(client, await make_member(), book)
        # Before: the copy out comes back by its due date to the first, then the second.
        assert first["estimated_available_at"] == loan["due_at"]
        assert second["estimated_available_at"] > loan["due_at"]
        suspended = await suspend(client, first, {"until": tomorrow()})
        assert suspended["status"] == "suspended"
        assert suspended["suspended_until"] == tomorrow()
        assert suspended["position"] == 1
        assert suspended["estimated_available_at"] is None
        # The hold behind keeps its number, but the copy out comes back to it.
        behind = (await client.get(f"/v1/holds/{second['id']}")).json()
        assert behind["position"] == 2
        assert behind["estimated_available_at"] == loan["due_at"]

    async def test_a_repeat_changes_nothing_and_a_new_date_replaces_the_old(
        self, client, make_member, make_lendable, db
    ):
        hold = await place(client, await make_member(), await make_lendable())
        first = await suspend(client, hold, {"until": tomorrow()})
        assert await suspend(client, hold, {"until": tomorrow()}) | {"updated_at": 0} == (
            first | {"updated_at": 0}
        )
        open_ended = await suspend(client, hold)
        assert (open_ended["status"], open_ended["suspended_until"]) == ("suspended", None)

    async def test_a_ready_hold_cannot_be_suspended(
        self, client, make_member, make_lendable, internal, db
    ):
        hold = await place(client, await make_member(), await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")
        before = row_counts(db)
        response = await client.post(f"/v1/holds/{hold['id']}/suspend", json={})
        assert assert_problem(response, 409)["error"] == "HOLD_NOT_SUSPENDABLE"
        assert row_counts(db) == before
        assert (await client.get(f"/v1/holds/{hold['id']}")).json()["status"] == "ready"

    async def test_a_cancelled_hold_cannot_be_suspended(self, client, make_member, make_lendable):
        hold = await place(client, await make_member(), await make_lendable())
        await client.delete(f"/v1/holds/{hold['id']}")
        response = await client.post(f"/v1/holds/{hold['id']}/suspend", json={})
        assert assert_problem(response, 409)["type"] == "/problems/hold-not-suspendable"

    async def test_a_resume_date_not_after_today_is_a_422(
        self, client, make_member, make_lendable, db
    ):
        hold = await place(client, await make_member(), await make_lendable())
        today = datetime.now(UTC).date().isoformat()
        response = await client.post(f"/v1/holds/{hold['id']}/suspend", json={"until": today})
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["field"] == "until"
        assert db.execute("SELECT status, suspended_until FROM holds").fetchall() == [
            ("waiting", None)
        ]

    async def test_bad_bodies_and_unknown_holds(self, client, make_member, make_lendable):
        hold = await place(client, await make_member(), await make_lendable())
        path = f"/v1/holds/{hold['id']}/suspend"
        assert_problem(await client.post(path, json={"until": "2027-02-30"}), 422)
        assert_problem(await client.post(path, json={"until": tomorrow(), "why": "x"}), 422)
        assert_problem(await client.post(path, content=b"{}"), 415)
        assert_problem(await client.post("/v1/holds/999/suspend", json={}), 404)
        assert (await client.get(f"/v1/holds/{hold['id']}")).json()["status"] == "waiting"

    async def test_a_shop_key_may_suspend_as_it_may_cancel(
        self, shop, make_member, make_lendable, anonymous
    ):
        hold = await place(shop, await make_member(), await make_lendable())
        assert (await suspend(shop, hold))["status"] == "suspended"
        assert_problem(await anonymous.post(f"/v1/holds/{hold['id']}/resume"), 401)

    async def test_a_suspended_hold_can_be_cancelled(self, client, make_member, make_lendable):
        hold = await place(client, await make_member(), await make_lendable())
        await suspend(client, hold, {"until": tomorrow()})
        cancelled = (await client.delete(f"/v1/holds/{hold['id']}")).json()
        assert (cancelled["status"], cancelled["suspended_until"]) == ("cancelled", None)


class TestResumeHold:
    async def test_resumed_in_the_same_place_and_the_shelf_looked_at_again(
        self, client, make_member, make_lendable, db
    ):
        book = await make_lendable()
        first = await place(client, await make_member(), book)
        await place(client, await make_member(), book)
        await suspend(client, first)
        response = await client.post(f"/v1/holds/{first['id']}/resume")
        assert response.status_code == 200, response.text
        resumed = response.json()
        assert (resumed["status"], resumed["position"]) == ("waiting", 1)
        assert resumed["estimated_available_at"] is not None
        placed = [e["hold_id"] for e in events(db, "hold.placed")]
        assert placed.count(first["id"]) == 2
        # A repeat answers the waiting hold and asks the worker nothing more.
        again = await client.post(f"/v1/holds/{first['id']}/resume")
        assert again.json()["status"] == "waiting"
        assert [e["hold_id"] for e in events(db, "hold.placed")] == placed

    async def test_only_a_queued_hold_resumes(
        self, client, make_member, make_lendable, internal, db
    ):
        hold = await place(client, await make_member(), await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")
        before = row_counts(db)
        response = await client.post(f"/v1/holds/{hold['id']}/resume")
        assert assert_problem(response, 409)["error"] == "HOLD_NOT_SUSPENDED"
        assert row_counts(db) == before
        assert_problem(await client.post("/v1/holds/999/resume"), 404)


class TestHandOverPassesSuspendedHoldsBy:
    async def test_the_copy_goes_to_the_next_waiting_hold_and_the_suspended_keeps_first_place(
        self, client, make_member, make_lendable, internal
    ):
        book = await make_lendable()
        first = await place(client, await make_member(), book)
        second = await place(client, await make_member(), book)
        third = await place(client, await make_member(), book)
        await suspend(client, first)
        handed = await internal.post(
            "/holds/hand-over", {"book_id": book["id"], "from_reference": "borrow:1"}
        )
        assert handed["hold"]["id"] == second["id"]
        assert (await client.get(f"/v1/holds/{first['id']}")).json()["position"] == 1
        assert (await client.get(f"/v1/holds/{third['id']}")).json()["position"] == 2
        await client.post(f"/v1/holds/{first['id']}/resume")
        handed = await internal.post(
            "/holds/hand-over", {"book_id": book["id"], "from_reference": "borrow:2"}
        )
        assert handed["hold"]["id"] == first["id"]

    async def test_nobody_but_suspended_holds_waiting_shelves_the_copy(
        self, client, make_member, make_lendable, internal
    ):
        book = await make_lendable()
        await suspend(client, await place(client, await make_member(), book))
        handed = await internal.post(
            "/holds/hand-over", {"book_id": book["id"], "from_reference": "borrow:3"}
        )
        assert handed == {"hold": None}

    async def test_a_suspended_hold_refuses_a_copy_off_the_shelf(
        self, client, make_member, make_lendable, internal
    ):
        hold = await place(client, await make_member(), await make_lendable())
        await suspend(client, hold)
        await internal.post(f"/holds/{hold['id']}/ready", status=409)


class TestAutomaticResume:
    async def test_the_sweep_resumes_holds_whose_date_has_come(
        self, client, make_member, make_lendable, internal, db
    ):
        book = await make_lendable()
        due = await place(client, await make_member(), book)
        later = await place(client, await make_member(), book)
        open_ended = await place(client, await make_member(), book)
        await suspend(client, due, {"until": tomorrow()})
        await suspend(client, later, {"until": tomorrow()})
        await suspend(client, open_ended)
        # A day passes for the first one.
        db.execute(
            "UPDATE holds SET suspended_until = (now() AT TIME ZONE 'UTC')::date WHERE id = %s",
            [due["id"]],
        )
        swept = await internal.post("/library/sweep")
        assert swept["resumed_holds"] == 1
        statuses = dict(db.execute("SELECT id, status FROM holds").fetchall())
        assert statuses == {
            due["id"]: "waiting",
            later["id"]: "suspended",
            open_ended["id"]: "suspended",
        }
        assert (await client.get(f"/v1/holds/{due['id']}")).json()["suspended_until"] is None
        assert [e["hold_id"] for e in events(db, "hold.placed")].count(due["id"]) == 2
        assert (await internal.post("/library/sweep"))["resumed_holds"] == 0
