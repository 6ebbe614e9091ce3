from __future__ import annotations

import asyncio

from tests.conftest import assert_problem
from tests.lending.conftest import events


async def place(client, member, book) -> dict:  # type: ignore[no-untyped-def]
    response = await client.post(
        "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class TestPlaceHold:
    async def test_queued_first_come_first_served(self, client, make_member, make_lendable, db):
        book = await make_lendable()
        first = await place(client, await make_member(), book)
        second = await place(client, await make_member(), book)
        assert (first["status"], first["position"]) == ("waiting", 1)
        assert second["position"] == 2
        assert [e["hold_id"] for e in events(db, "hold.placed")] == [first["id"], second["id"]]

    async def test_one_open_hold_per_member_and_book(self, client, make_member, make_lendable):
        member, book = await make_member(), await make_lendable()
        await place(client, member, book)
        problem = assert_problem(
            await client.post("/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}),
            409,
        )
        assert problem["type"] == "/problems/already-holding"

    async def test_not_for_a_book_the_member_has_out(self, client, borrow_now):
        loan = await borrow_now()
        problem = assert_problem(
            await client.post(
                "/v1/holds", json={"member_id": loan["member_id"], "book_id": loan["book_id"]}
            ),
            409,
        )
        assert problem["type"] == "/problems/already-borrowed"

    async def test_refusals(self, client, make_member, make_book, make_lendable, db):
        blocked, book = await make_member(status="blocked"), await make_lendable()
        assert_problem(
            await client.post(
                "/v1/holds", json={"member_id": blocked["id"], "book_id": book["id"]}
            ),
            403,
        )
        member, unlendable = await make_member(), await make_book()
        assert_problem(
            await client.post(
                "/v1/holds", json={"member_id": member["id"], "book_id": unlendable["id"]}
            ),
            409,
        )
        assert_problem(
            await client.post("/v1/holds", json={"member_id": 999, "book_id": book["id"]}), 422
        )
        assert db.execute("SELECT count(*) FROM holds").fetchone() == (0,)


class TestCancelHold:
    async def test_waiting_hold_cancelled_and_queue_moves_up(
        self, client, make_member, make_lendable
    ):
        book = await make_lendable()
        first = await place(client, await make_member(), book)
        second = await place(client, await make_member(), book)
        cancelled = (await client.delete(f"/v1/holds/{first['id']}")).json()
        assert cancelled["status"] == "cancelled"
        assert (await client.get(f"/v1/holds/{second['id']}")).json()["position"] == 1
        again = await client.delete(f"/v1/holds/{first['id']}")
        assert again.status_code == 200

    async def test_ready_hold_cancelled_frees_its_copy(
        self, client, make_member, make_lendable, internal, db
    ):
        hold = await place(client, await make_member(), await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")
        await client.delete(f"/v1/holds/{hold['id']}")
        assert events(db, "copy.freed") == [
            {"book_id": hold["book_id"], "reference": f"hold:{hold['id']}"}
        ]


class TestHoldReady:
    async def test_filled_from_the_shelf_with_a_pickup_deadline_and_a_notice(
        self, client, make_member, make_lendable, internal, db
    ):
        hold = await place(client, await make_member(), await make_lendable(title="Emma"))
        ready = await internal.post(f"/holds/{hold['id']}/ready")
        assert ready["status"] == "ready"
        assert ready["position"] is None
        assert ready["pickup_by"] is not None
        assert await internal.post(f"/holds/{hold['id']}/ready") == ready
        [notice] = events(db, "notice.requested")
        assert notice["kind"] == "hold_ready"
        assert notice["book_title"] == "Emma"
        assert notice["deadline"] == ready["pickup_by"]

    async def test_a_cancelled_hold_refuses_the_copy(
        self, client, make_member, make_lendable, internal
    ):
        hold = await place(client, await make_member(), await make_lendable())
        await client.delete(f"/v1/holds/{hold['id']}")
        await internal.post(f"/holds/{hold['id']}/ready", status=409)


class TestHandOver:
    async def test_a_freed_copy_goes_to_the_first_in_line_once(
        self, client, make_member, make_lendable, internal
    ):
        book = await make_lendable()
        first = await place(client, await make_member(), book)
        await place(client, await make_member(), book)
        body = {"book_id": book["id"], "from_reference": "borrow:7"}
        handed = await internal.post("/holds/hand-over", body)
        assert handed["hold"]["id"] == first["id"]
        assert handed["hold"]["status"] == "ready"
        assert await internal.post("/holds/hand-over", body) == handed

    async def test_nobody_waiting_answers_null(self, client, make_lendable, internal):
        book = await make_lendable()
        handed = await internal.post(
            "/holds/hand-over", {"book_id": book["id"], "from_reference": "borrow:9"}
        )
        assert handed == {"hold": None}

    async def test_two_copies_returned_at_once_serve_two_holds(
        self, client, make_member, make_lendable, internal
    ):
        book = await make_lendable()
        holds = [await place(client, await make_member(), book) for _ in range(3)]
        handed = await asyncio.gather(
            *(
                internal.post(
                    "/holds/hand-over", {"book_id": book["id"], "from_reference": f"borrow:{n}"}
                )
                for n in (1, 2)
            )
        )
        served = sorted(h["hold"]["id"] for h in handed)
        assert served == [holds[0]["id"], holds[1]["id"]]
        assert (await client.get(f"/v1/holds/{holds[2]['id']}")).json()["position"] == 1


class TestCheckOutHold:
    async def test_ready_hold_becomes_an_active_loan(
        self, client, make_member, make_lendable, internal, db
    ):
        member = await make_member()
        hold = await place(client, member, await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")
        response = await client.post(f"/v1/holds/{hold['id']}/checkout")
        assert response.status_code == 201, response.text
        loan = response.json()
        assert loan["status"] == "active"
        assert loan["hold_id"] == hold["id"]
        assert (await client.get(f"/v1/holds/{hold['id']}")).json()["status"] == "fulfilled"
        assert events(db, "hold.checked_out") == [
            {"hold_id": hold["id"], "borrow_id": loan["id"], "book_id": hold["book_id"]}
        ]
        again = await client.post(f"/v1/holds/{hold['id']}/checkout")
        assert again.status_code == 200
        assert again.json()["id"] == loan["id"]

    async def test_waiting_hold_is_not_ready(self, client, make_member, make_lendable):
        hold = await place(client, await make_member(), await make_lendable())
        problem = assert_problem(await client.post(f"/v1/holds/{hold['id']}/checkout"), 409)
        assert problem["type"] == "/problems/hold-not-ready"

    async def test_loan_limit_applies(
        self, client, make_member, make_lendable, internal, borrow_now, db
    ):
        member = await make_member(max_loans=1)
        hold = await place(client, member, await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")
        await borrow_now(member=member)
        problem = assert_problem(await client.post(f"/v1/holds/{hold['id']}/checkout"), 409)
        assert problem["type"] == "/problems/loan-limit-reached"
        assert (await client.get(f"/v1/holds/{hold['id']}")).json()["status"] == "ready"


class TestExpiry:
    async def test_sweep_expires_uncollected_holds_and_frees_their_copies(
        self, client, make_member, make_lendable, internal, db
    ):
        hold = await place(client, await make_member(), await make_lendable())
        await internal.post(f"/holds/{hold['id']}/ready")
        db.execute("UPDATE holds SET pickup_by = now() - interval '1 minute'")
        swept = await internal.post("/library/sweep")
        assert swept["expired_holds"] == 1
        assert (await client.get(f"/v1/holds/{hold['id']}")).json()["status"] == "expired"
        assert {"book_id": hold["book_id"], "reference": f"hold:{hold['id']}"} in events(
            db, "copy.freed"
        )
        assert (await internal.post("/library/sweep"))["expired_holds"] == 0
