"""Notices: each recorded once per kind, subject and deadline; overdue notices at the
policy's days and in order; the final one blocking where the category says so; daily
digests; and the delivery record the workers report to, seen through the API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg

from tests.conftest import SERVICE_HEADERS, assert_problem, row_counts
from tests.lending.conftest import Internal, events, shift_due


def notices(db: psycopg.Connection[Any], **where: Any) -> list[tuple[str, int]]:
    """(kind, subject id) of the notices recorded, oldest first."""
    clause = " AND ".join(f"{column} = %s" for column in where) or "true"
    rows = db.execute(
        f"SELECT kind, subject_id FROM notices WHERE {clause} ORDER BY id",
        list(where.values()),
    )
    return [(kind, subject) for kind, subject in rows]


def days_pass(db: psycopg.Connection[Any], days: float) -> None:
    """Move every loan's and hold's dates, and every notice's, `days` into the past: what
    `days` days passing does to them."""
    shift = [days * 86400]
    db.execute("UPDATE borrows SET due_at = due_at - make_interval(secs => %s)", shift)
    db.execute("UPDATE holds SET pickup_by = pickup_by - make_interval(secs => %s)", shift)
    db.execute(
        "UPDATE notices SET deadline = deadline - make_interval(secs => %s),"
        " day = day - ceil(%s::numeric / 86400)::int",
        shift * 2,
    )


async def sweep(internal: Internal) -> dict[str, Any]:
    return await internal.post("/library/sweep")


async def place_hold(client: httpx.AsyncClient, member: dict[str, Any], book: dict[str, Any]):  # type: ignore[no-untyped-def]
    response = await client.post(
        "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
    )
    assert response.status_code == 201, response.text
    return response.json()


class TestRecordedOnce:
    async def test_each_kind_once_however_often_the_sweep_runs(
        self, client, make_member, make_lendable, borrow_now, internal, db
    ) -> None:
        due_soon, overdue = await borrow_now(), await borrow_now()
        shift_due(db, due_soon["id"], days=-1)
        shift_due(db, overdue["id"], days=2)
        hold = await place_hold(client, await make_member(), await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")
        first = await sweep(internal)
        assert (first["notices"], first["more"]) == (2, False)
        for _ in range(2):
            assert (await sweep(internal))["notices"] == 0
        assert sorted(notices(db)) == sorted(
            [("due_soon", due_soon["id"]), ("overdue_1", overdue["id"]), ("hold_ready", hold["id"])]
        )
        assert len(events(db, "notice.requested")) == 3

    async def test_concurrent_sweeps_record_each_notice_once(
        self, borrow_now, internal, db
    ) -> None:
        loans = [await borrow_now() for _ in range(6)]
        for loan in loans:
            shift_due(db, loan["id"], days=2)
        results = await asyncio.gather(*(sweep(internal) for _ in range(4)))
        assert sum(result["notices"] for result in results) == 6
        assert sorted(notices(db)) == sorted(("overdue_1", loan["id"]) for loan in loans)
        assert len(events(db, "notice.requested")) == 6

    async def test_a_new_due_date_gets_a_new_courtesy_notice(
        self, client, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=-1)
        await sweep(internal)
        renewed = await client.post(f"/v1/borrows/{loan['id']}/renew")
        assert renewed.status_code == 200, renewed.text
        assert (await sweep(internal))["notices"] == 0
        shift_due(db, loan["id"], days=-0.5)
        await sweep(internal)
        assert notices(db) == [("due_soon", loan["id"])] * 2


class TestOverdueNotices:
    async def test_first_second_and_third_at_the_policy_days(
        self, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=0.5)
        schedule = [(0, []), (1, ["overdue_1"]), (5, []), (1, ["overdue_2"])]
        schedule += [(6, []), (1, ["overdue_3"]), (10, [])]
        expected: list[str] = []
        for days, new in schedule:
            days_pass(db, days)
            await sweep(internal)
            expected += new
            assert [kind for kind, _ in notices(db)] == expected, f"after {days} more days"
        assert [n["kind"] for n in events(db, "notice.requested")] == expected

    async def test_a_long_overdue_loan_gets_them_in_order_a_day_apart(
        self, borrow_now, internal, db
    ) -> None:
        loan = await borrow_now()
        shift_due(db, loan["id"], days=30)
        for expected in (["overdue_1"], ["overdue_1", "overdue_2"]):
            await sweep(internal)
            await sweep(internal)
            assert [kind for kind, _ in notices(db)] == expected
            days_pass(db, 1)
        await sweep(internal)
        assert [kind for kind, _ in notices(db)] == ["overdue_1", "overdue_2", "overdue_3"]

    async def test_the_days_come_from_the_loans_policy(
        self, client, make_member, borrow_now, internal, db
    ) -> None:
        policy = await client.post(
            "/v1/policies",
            json={
                "member_category": "child",
                "loan_period_days": 7,
                "max_renewals": 1,
                "fine_per_day": "0.10",
                "fine_cap": "book_price",
                "hold_pickup_days": 2,
                "overdue_notice_days": [3, 5, 9],
            },
        )
        assert policy.status_code == 201, policy.text
        child = await borrow_now(member=await make_member(category="child"))
        adult = await borrow_now()
        shift_due(db, child["id"], days=2)
        shift_due(db, adult["id"], days=2)
        await sweep(internal)
        assert notices(db) == [("overdue_1", adult["id"])]
        days_pass(db, 1)
        await sweep(internal)
        assert notices(db, subject_id=child["id"]) == [("overdue_1", child["id"])]


class TestHoldNotices:
    async def test_expiring_once_when_the_pickup_deadline_is_a_day_away(
        self, client, make_member, make_lendable, internal, db
    ) -> None:
        hold = await place_hold(client, await make_member(), await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")  # 3 days to pick it up
        await sweep(internal)
        days_pass(db, 1.5)
        await sweep(internal)
        assert notices(db) == [("hold_ready", hold["id"])]
        days_pass(db, 0.75)
        for _ in range(2):
            await sweep(internal)
        assert notices(db) == [("hold_ready", hold["id"]), ("hold_expiring", hold["id"])]
        [_, expiring] = events(db, "notice.requested")
        assert expiring["kind"] == "hold_expiring"


async def final_notice(internal: Internal, db: psycopg.Connection[Any], borrow_id: int) -> None:
    """Walk the loan through its three overdue notices (at days 1, 7 and 14)."""
    shift_due(db, borrow_id, days=1.5)
    await sweep(internal)
    for days in (6, 7):
        days_pass(db, days)
        await sweep(internal)
    assert [kind for kind, _ in notices(db, subject_id=borrow_id)][-1] == "overdue_3"


class TestFinalNoticeBlock:
    async def test_blocks_members_of_a_flagged_category_and_dry_runs_say_so(
        self, client, make_member, make_lendable, borrow_now, internal, db
    ) -> None:
        flag = await client.patch(
            "/v1/member-categories/adult",
            json={"block_after_final_notice": True, "max_overdue_loans": 5},
        )
        assert flag.json()["block_after_final_notice"] is True
        member = await make_member()
        loan = await borrow_now(member=member)
        await final_notice(internal, db, loan["id"])
        body = {"member_id": member["id"], "book_id": (await make_lendable())["id"]}
        before = row_counts(db)
        dry = assert_problem(await client.post("/v1/borrows?dry_run=true", json=body), 403)
        real = assert_problem(await client.post("/v1/borrows", json=body), 403)
        assert row_counts(db) == before
        assert dry["error"] == real["error"] == "MEMBER_BLOCKED"
        assert dry["rule"] == real["rule"]
        assert (real["rule"]["name"], real["rule"]["limit"], real["rule"]["current"]) == (
            "block_after_final_notice",
            0,
            1,
        )
        hold = await client.post("/v1/holds", json=body)
        assert assert_problem(hold, 403)["rule"]["name"] == "block_after_final_notice"
        renew = await client.post(f"/v1/borrows/{loan['id']}/renew")
        assert assert_problem(renew, 403)["rule"]["name"] == "block_after_final_notice"

        returned = await client.post(f"/v1/borrows/{loan['id']}/return")
        assert returned.status_code == 200, returned.text
        await client.patch("/v1/member-categories/adult", json={"max_balance": "1000.00"})
        assert (await client.post("/v1/borrows", json=body)).status_code == 201

    async def test_other_categories_are_not_blocked(
        self, client, make_member, make_lendable, borrow_now, internal, db
    ) -> None:
        await client.patch("/v1/member-categories/adult", json={"max_overdue_loans": 5})
        member = await make_member()
        await final_notice(internal, db, (await borrow_now(member=member))["id"])
        body = {"member_id": member["id"], "book_id": (await make_lendable())["id"]}
        response = await client.post("/v1/borrows?dry_run=true", json=body)
        assert response.status_code == 200, response.text

    async def test_a_final_notice_that_failed_for_good_does_not_block(
        self, client, make_member, make_lendable, borrow_now, internal, db
    ) -> None:
        await client.patch(
            "/v1/member-categories/adult",
            json={"block_after_final_notice": True, "max_overdue_loans": 5},
        )
        member = await make_member()
        loan = await borrow_now(member=member)
        await final_notice(internal, db, loan["id"])
        [(final_id,)] = db.execute(
            "SELECT id FROM notices WHERE kind = 'overdue_3' AND subject_id = %s", [loan["id"]]
        )
        await internal.post(
            "/notices/deliveries",
            {
                "notice_ids": [final_id],
                "attempt": 1,
                "outcome": "failed",
                "error": "bounced",
                "final": True,
            },
        )
        body = {"member_id": member["id"], "book_id": (await make_lendable())["id"]}
        assert (await client.post("/v1/borrows?dry_run=true", json=body)).status_code == 200


class TestDigest:
    async def test_one_mail_a_day_with_all_the_notices_of_the_day(
        self, client, make_member, borrow_now, internal, db
    ) -> None:
        reader = await make_member(notice_delivery="digest")
        assert reader["notice_delivery"] == "digest"
        other = await make_member()
        mine = [await borrow_now(member=reader) for _ in range(2)]
        theirs = await borrow_now(member=other)
        shift_due(db, mine[0]["id"], days=-1)
        shift_due(db, mine[1]["id"], days=2)
        shift_due(db, theirs["id"], days=2)
        assert (await sweep(internal))["digests"] == 0
        assert [n["member_id"] for n in events(db, "notice.requested")] == [other["id"]]
        # The next day: the day's digest goes out, once however many sweeps run.
        days_pass(db, 1)
        results = await asyncio.gather(*(sweep(internal) for _ in range(3)))
        assert sum(result["digests"] for result in results) == 1
        [digest] = events(db, "notice.digest_requested")
        assert (digest["member_id"], digest["email"]) == (reader["id"], reader["email"])
        assert sorted((n["kind"], n["book_id"]) for n in digest["notices"]) == sorted(
            [("due_soon", mine[0]["book_id"]), ("overdue_1", mine[1]["book_id"])]
        )
        assert digest["digest_id"] == min(n["notice_id"] for n in digest["notices"])
        listed = (await client.get(f"/v1/members/{reader['id']}/notices")).json()
        assert {(n["via_digest"], n["status"]) for n in listed["data"]} == {(True, "queued")}

    async def test_a_ready_hold_of_a_digest_member_waits_for_the_digest(
        self, client, make_member, make_lendable, internal, db
    ) -> None:
        reader = await make_member(notice_delivery="digest")
        hold = await place_hold(client, reader, await make_lendable(title="Emma"))
        await internal.post(f"/holds/{hold['id']}/ready")
        assert notices(db) == [("hold_ready", hold["id"])]
        assert events(db, "notice.requested") == []
        days_pass(db, 1)
        assert (await sweep(internal))["digests"] == 1
        [digest] = events(db, "notice.digest_requested")
        assert [(n["kind"], n["book_title"]) for n in digest["notices"]] == [("hold_ready", "Emma")]

    async def test_members_choose_and_change_their_delivery(self, client, make_member) -> None:
        member = await make_member()
        assert member["notice_delivery"] == "each"
        changed = await client.patch(
            f"/v1/members/{member['id']}", json={"notice_delivery": "digest"}
        )
        assert changed.json()["notice_delivery"] == "digest"
        bad = await client.patch(f"/v1/members/{member['id']}", json={"notice_delivery": "weekly"})
        assert assert_problem(bad, 422)["errors"][0]["field"] == "notice_delivery"


async def one_notice(borrow_now, internal: Internal, db: psycopg.Connection[Any]) -> int:  # type: ignore[no-untyped-def]
    loan = await borrow_now()
    shift_due(db, loan["id"], days=2)
    await sweep(internal)
    [notice] = events(db, "notice.requested")
    return int(notice["notice_id"])


def report(notice_id: int, attempt: int, outcome: str, **extra: Any) -> dict[str, Any]:
    return {"notice_ids": [notice_id], "attempt": attempt, "outcome": outcome, **extra}


class TestDeliveryRecords:
    async def test_queued_then_failed_retried_and_sent(
        self, client, borrow_now, internal, db
    ) -> None:
        notice_id = await one_notice(borrow_now, internal, db)
        [queued] = (await client.get("/v1/notices")).json()["data"]
        assert (queued["status"], queued["attempts"], queued["sent_at"]) == ("queued", 0, None)
        failed = report(notice_id, 1, "failed", error="451 busy")
        for _ in range(2):
            [retrying] = (await internal.post("/notices/deliveries", failed))["notices"]
            assert (retrying["status"], retrying["attempts"]) == ("retrying", 1)
            assert retrying["last_error"] == "451 busy"
        [sent] = (await internal.post("/notices/deliveries", report(notice_id, 2, "sent")))[
            "notices"
        ]
        assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 2, "451 busy")
        # Repeats and late reports change nothing.
        assert (await internal.post("/notices/deliveries", report(notice_id, 2, "sent")))[
            "notices"
        ] == [sent]
        late = await internal.post("/notices/deliveries", failed)
        assert late["notices"] == [sent]

    async def test_failed_for_good_after_the_last_attempt(
        self, client, borrow_now, internal, db
    ) -> None:
        notice_id = await one_notice(borrow_now, internal, db)
        body = report(notice_id, 6, "failed", error="connection refused", final=True)
        await internal.post("/notices/deliveries", body)
        [failed] = (await client.get("/v1/notices", params={"status": "failed"})).json()["data"]
        assert (failed["id"], failed["status"], failed["attempts"]) == (notice_id, "failed", 6)
        assert failed["last_error"] == "connection refused"
        assert (await client.get("/v1/notices", params={"status": "sent"})).json()["total"] == 0

    async def test_unknown_notices_and_bad_reports_are_refused(
        self, client, borrow_now, internal, db
    ) -> None:
        notice_id = await one_notice(borrow_now, internal, db)
        missing = await internal.client.post(
            "/internal/v1/notices/deliveries",
            json=report(notice_id + 1000, 1, "sent"),
            headers=SERVICE_HEADERS,
        )
        assert assert_problem(missing, 404)["error"] == "NOTICE_NOT_FOUND"
        for bad in (report(notice_id, 0, "sent"), report(notice_id, 1, "lost"), {}):
            response = await internal.client.post(
                "/internal/v1/notices/deliveries", json=bad, headers=SERVICE_HEADERS
            )
            assert_problem(response, 422)
        [notice] = (await client.get("/v1/notices")).json()["data"]
        assert (notice["status"], notice["attempts"]) == ("queued", 0)
        unkeyed = await client.post(
            "/internal/v1/notices/deliveries", json=report(notice_id, 1, "sent")
        )
        assert unkeyed.status_code in (401, 403)


class TestNoticeApi:
    async def test_a_members_notices_newest_first(
        self, client, make_member, borrow_now, internal, db
    ) -> None:
        member = await make_member()
        first, second = await borrow_now(member=member), await borrow_now(member=member)
        shift_due(db, first["id"], days=2)
        shift_due(db, second["id"], days=-1)
        await borrow_now()  # someone else's loan, not listed
        await sweep(internal)
        response = await client.get(f"/v1/members/{member['id']}/notices", params={"limit": 1})
        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == "2"
        page = response.json()
        assert (page["total"], page["limit"], page["offset"]) == (2, 1, 0)
        [newest] = page["data"]
        assert newest["member_id"] == member["id"]
        assert newest["kind"] in ("due_soon", "overdue_1")
        assert newest["subject"].startswith("borrow:")
        assert newest["deadline"].endswith("Z")

    async def test_unknown_member_is_a_404(self, client) -> None:
        response = await client.get("/v1/members/999999/notices")
        assert assert_problem(response, 404)["error"] == "MEMBER_NOT_FOUND"

    async def test_a_bad_status_filter_is_a_422(self, client) -> None:
        for path in ("/v1/notices", "/v1/members/1/notices"):
            response = await client.get(path, params={"status": "lost"})
            assert assert_problem(response, 422)["errors"][0]["field"] == "status"

    async def test_staff_only(self, shop) -> None:
        assert_problem(await shop.get("/v1/notices"), 403)
        assert_problem(await shop.get("/v1/members/1/notices"), 403)
