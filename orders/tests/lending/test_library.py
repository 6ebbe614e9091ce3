from __future__ import annotations

from tests.lending.conftest import events, shift_due


class TestSweepNotices:
    async def test_due_soon_and_overdue_noticed_once(self, client, borrow_now, internal, db):
        due_soon, overdue, later = await borrow_now(), await borrow_now(), await borrow_now()
        shift_due(db, due_soon["id"], days=-1)
        shift_due(db, overdue["id"], days=3)
        first = await internal.post("/library/sweep")
        assert first["notices"] == 2
        notices = {(n["kind"], n["book_id"]) for n in events(db, "notice.requested")}
        assert notices == {("due_soon", due_soon["book_id"]), ("overdue_1", overdue["book_id"])}
        second = await internal.post("/library/sweep")
        assert second["notices"] == 0
        assert len(events(db, "notice.requested")) == 2
        assert later["id"] not in {n["notice_id"] for n in events(db, "notice.requested")}

    async def test_notice_says_who_what_and_when(
        self, client, make_member, borrow_now, internal, db
    ):
        member = await make_member(name="Ada", email="ada@example.org")
        loan = await borrow_now(member=member)
        shift_due(db, loan["id"], days=1)
        await internal.post("/library/sweep")
        [notice] = events(db, "notice.requested")
        assert notice["email"] == "ada@example.org"
        assert notice["name"] == "Ada"
        assert notice["book_title"] == loan["book_title"]
        assert notice["deadline"].endswith("Z")


class TestFigures:
    async def test_summary(self, client, borrow_now, make_member, db):
        await make_member()
        loans = [await borrow_now() for _ in range(3)]
        shift_due(db, loans[0]["id"], days=2)
        await client.post(f"/v1/borrows/{loans[1]['id']}/return")
        summary = (await client.get("/v1/library/summary")).json()
        assert summary == {
            "loans_out": 2,
            "overdue": 1,
            "holds_waiting": 0,
            "holds_ready": 0,
            "members": 4,
            "members_borrowing": 2,
            "utilization": 0.5,
        }

    async def test_popular_books_and_top_members(
        self, client, make_member, make_lendable, borrow_now
    ):
        reader = await make_member(name="Reader")
        hit, other = await make_lendable(title="Hit"), await make_lendable(title="Other")
        await borrow_now(member=reader, book=hit)
        await borrow_now(book=hit)
        await borrow_now(member=reader, book=other)
        popular = (await client.get("/v1/library/popular", params={"days": 7})).json()
        assert [(p["book_title"], p["loans"]) for p in popular] == [("Hit", 2), ("Other", 1)]
        top = (await client.get("/v1/library/members/top", params={"limit": 1})).json()
        assert top == [{"member_id": reader["id"], "name": "Reader", "loans": 2}]

    async def test_popular_counts_loans_of_the_window_titled_as_the_latest(
        self, client, make_member, make_lendable, borrow_now, db
    ):
        book = await make_lendable(title="First Title", copies=4)
        old, _, latest = [await borrow_now(book=book) for _ in range(3)]
        member = await make_member()
        pending = await client.post(
            "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
        )
        assert pending.json()["status"] == "pending"
        db.execute(
            "UPDATE borrows SET requested_at = now() - interval '8 days' WHERE id = %s", [old["id"]]
        )
        db.execute("UPDATE borrows SET book_title = 'Second Title' WHERE id = %s", [latest["id"]])
        week = (await client.get("/v1/library/popular", params={"days": 7})).json()
        assert [(p["book_title"], p["loans"]) for p in week] == [("Second Title", 2)]
        fortnight = (await client.get("/v1/library/popular", params={"days": 14})).json()
        assert [p["loans"] for p in fortnight] == [3]

    async def test_daily_lists_every_day_of_the_window(self, client, borrow_now, db):
        first, second, _ = [await borrow_now() for _ in range(3)]
        db.execute(
            "UPDATE borrows SET requested_at = now() - interval '2 days' WHERE id = ANY(%s)",
            [[first["id"], second["id"]]],
        )
        daily = (await client.get("/v1/library/daily", params={"days": 4})).json()
        assert [d["loans"] for d in daily] == [0, 2, 0, 1]
        assert (
            daily[-1]["day"]
            == db.execute("SELECT (now() AT TIME ZONE 'UTC')::date::text").fetchone()[0]
        )
        response = await client.get("/v1/library/daily", params={"days": 367})
        assert response.status_code == 422

    async def test_window_is_bounded(self, client):
        response = await client.get("/v1/library/popular", params={"days": 0})
        assert response.status_code == 422
