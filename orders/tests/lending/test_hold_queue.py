"""A book's queue as staff see it and reorder it."""

from __future__ import annotations

import asyncio

from servicekit.api_keys import Role
from tests.conftest import asgi_client, assert_problem, row_counts
from tests.lending.test_holds import place


async def queue_ids(client, book) -> list[int]:  # type: ignore[no-untyped-def]
    response = await client.get(f"/v1/holds/queues/{book['id']}")
    assert response.status_code == 200, response.text
    return [hold["id"] for hold in response.json()["data"]]


async def queue_of(client, make_member, book, size: int = 3) -> list[dict]:  # type: ignore[no-untyped-def]
    return [await place(client, await make_member(), book) for _ in range(size)]


class TestQueue:
    async def test_listed_in_order_with_suspended_holds_in_their_place(
        self, client, make_member, make_lendable, internal
    ):
        book = await make_lendable()
        first, second, third = await queue_of(client, make_member, book)
        await client.post(f"/v1/holds/{second['id']}/suspend", json={})
        ready = await place(client, await make_member(), book)
        await internal.post(f"/holds/{ready['id']}/ready")
        body = (await client.get(f"/v1/holds/queues/{book['id']}")).json()
        assert body["book_id"] == book["id"]
        assert [(h["id"], h["status"], h["position"]) for h in body["data"]] == [
            (first["id"], "waiting", 1),
            (second["id"], "suspended", 2),
            (third["id"], "waiting", 3),
        ]

    async def test_staff_only(self, shop, make_lendable):
        book = await make_lendable()
        assert_problem(await shop.get(f"/v1/holds/queues/{book['id']}"), 403)


class TestReorder:
    async def test_positions_estimates_and_hand_over_follow_the_new_order(
        self, client, make_member, make_lendable, internal, borrow_now
    ):
        book = await make_lendable(copies=1)
        loan = await borrow_now(book=book)
        first, second, third = await queue_of(client, make_member, book)
        order = [third["id"], first["id"], second["id"]]
        response = await client.put(f"/v1/holds/queues/{book['id']}", json={"hold_ids": order})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert [(h["id"], h["position"]) for h in data] == [
            (third["id"], 1),
            (first["id"], 2),
            (second["id"], 3),
        ]
        assert data[0]["estimated_available_at"] == loan["due_at"]
        assert data[1]["estimated_available_at"] > loan["due_at"]
        # A hold placed afterwards still queues last.
        fourth = await place(client, await make_member(), book)
        assert fourth["position"] == 4
        assert await queue_ids(client, book) == [*order, fourth["id"]]
        handed = [
            (
                await internal.post(
                    "/holds/hand-over", {"book_id": book["id"], "from_reference": f"borrow:{n}"}
                )
            )["hold"]["id"]
            for n in (101, 102)
        ]
        assert handed == order[:2]

    async def test_the_same_order_again_changes_nothing(self, client, make_member, make_lendable):
        book = await make_lendable()
        holds = await queue_of(client, make_member, book)
        order = {"hold_ids": [h["id"] for h in reversed(holds)]}
        first = (await client.put(f"/v1/holds/queues/{book['id']}", json=order)).json()
        again = await client.put(f"/v1/holds/queues/{book['id']}", json=order)
        assert again.status_code == 200
        assert [h["position"] for h in again.json()["data"]] == [1, 2, 3]
        assert [h["id"] for h in again.json()["data"]] == [h["id"] for h in first["data"]]

    async def test_a_stale_or_partial_order_is_a_409_and_changes_nothing(
        self, client, make_member, make_lendable, db
    ):
        book = await make_lendable()
        first, second, third = await queue_of(client, make_member, book)
        await client.delete(f"/v1/holds/{first['id']}")
        ranks = db.execute("SELECT id, queue_rank FROM holds ORDER BY id").fetchall()
        before = row_counts(db)
        path = f"/v1/holds/queues/{book['id']}"
        stale = await client.put(path, json={"hold_ids": [third["id"], second["id"], first["id"]]})
        problem = assert_problem(stale, 409)
        assert problem["error"] == "QUEUE_CHANGED"
        assert str(first["id"]) in problem["detail"]
        partial = await client.put(path, json={"hold_ids": [third["id"]]})
        assert assert_problem(partial, 409)["error"] == "QUEUE_CHANGED"
        assert db.execute("SELECT id, queue_rank FROM holds ORDER BY id").fetchall() == ranks
        assert row_counts(db) == before

    async def test_bad_bodies_are_422(self, client, make_member, make_lendable, db):
        book = await make_lendable()
        first, second, _third = await queue_of(client, make_member, book)
        path = f"/v1/holds/queues/{book['id']}"
        ranks = db.execute("SELECT id, queue_rank FROM holds ORDER BY id").fetchall()
        repeated = await client.put(
            path, json={"hold_ids": [first["id"], second["id"], first["id"]]}
        )
        assert assert_problem(repeated, 422)["errors"][0]["field"] == "hold_ids[2]"
        assert_problem(await client.put(path, json={"hold_ids": []}), 422)
        assert_problem(await client.put(path, json={"hold_ids": ["1"]}), 422)
        assert_problem(await client.put(path, json={}), 422)
        assert_problem(await client.put("/v1/holds/queues/0", json={"hold_ids": [1]}), 422)
        assert db.execute("SELECT id, queue_rank FROM holds ORDER BY id").fetchall() == ranks

    async def test_admin_only(self, orders_app, key_of, make_member, make_lendable, client):
        book = await make_lendable()
        holds = await queue_of(client, make_member, book, size=2)
        async with asgi_client(orders_app, key_of(Role.DESK)) as desk:
            assert (await desk.get(f"/v1/holds/queues/{book['id']}")).status_code == 200
            response = await desk.put(
                f"/v1/holds/queues/{book['id']}", json={"hold_ids": [h["id"] for h in holds]}
            )
            assert_problem(response, 403)

    async def test_a_copy_handed_over_during_a_reorder_goes_by_the_order_that_commits(
        self, client, make_member, make_lendable, internal
    ):
        book = await make_lendable()
        first, second = await queue_of(client, make_member, book, size=2)
        reorder, handed = await asyncio.gather(
            client.put(
                f"/v1/holds/queues/{book['id']}", json={"hold_ids": [second["id"], first["id"]]}
            ),
            internal.post(
                "/holds/hand-over", {"book_id": book["id"], "from_reference": "borrow:77"}
            ),
        )
        # Whichever went first, the copy went to the head of the queue as it stood then.
        if reorder.status_code == 200:
            assert [h["id"] for h in reorder.json()["data"]] == [second["id"], first["id"]]
            assert handed["hold"]["id"] == second["id"]
        else:
            # The hand-over readied the first hold before: the order sent is out of date.
            assert assert_problem(reorder, 409)["error"] == "QUEUE_CHANGED"
            assert handed["hold"]["id"] == first["id"]
