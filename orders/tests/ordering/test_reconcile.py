"""The reconciler on orders: a pending order whose job is overdue is announced again, with
a doubling wait, and given up (rejected, its stock released) after the last attempt; the
stock release of a cancelled or given-up order is announced again until a worker reports
it done."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from tests.conftest import SERVICE_HEADERS, assert_problem, outbox_events

MAX_REDRIVES = 5  # the default of ORDERS_SAGA_MAX_REDRIVES


async def reconcile(client, headers: dict[str, str] = SERVICE_HEADERS) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await client.post("/internal/v1/reconcile", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def age(db: psycopg.Connection[Any], order_id: int, *, seconds: float) -> None:
    """Make the order (and its last re-drive, if any) `seconds` older."""
    db.execute(
        "UPDATE orders SET created_at = created_at - make_interval(secs => %(s)s),"
        " redriven_at = redriven_at - make_interval(secs => %(s)s) WHERE id = %(id)s",
        {"s": seconds, "id": order_id},
    )


def redrives(db: psycopg.Connection[Any], order_id: int) -> int:
    row = db.execute("SELECT redrives FROM orders WHERE id = %s", [order_id]).fetchone()
    assert row is not None
    return int(row[0])


def placed_events(db: psycopg.Connection[Any], order_id: int) -> list[dict[str, Any]]:
    return [
        payload
        for topic, payload in outbox_events(db)
        if topic == "order.placed" and payload["order_id"] == order_id
    ]


async def test_a_fresh_pending_order_is_left_alone(client, place_order, db):
    order = await place_order()
    assert await reconcile(client) == {
        "orders": {"redriven": 0, "given_up": 0},
        "borrows": {"redriven": 0, "given_up": 0},
        "releases": {"redriven": 0, "given_up": 0},
        "more": False,
    }
    assert len(placed_events(db, order["id"])) == 1


async def test_a_stalled_order_is_announced_again_with_a_doubling_wait(client, place_order, db):
    order = await place_order(quantity=2)
    age(db, order["id"], seconds=31)
    assert (await reconcile(client))["orders"] == {"redriven": 1, "given_up": 0}
    first, again = placed_events(db, order["id"])
    assert again == first  # the same reservation: books replays it if it was made
    assert redrives(db, order["id"]) == 1

    # The next attempt waits twice as long: 60 s after this one.
    assert (await reconcile(client))["orders"]["redriven"] == 0
    age(db, order["id"], seconds=59)
    assert (await reconcile(client))["orders"]["redriven"] == 0
    age(db, order["id"], seconds=2)
    assert (await reconcile(client))["orders"]["redriven"] == 1
    assert redrives(db, order["id"]) == 2
    assert len(placed_events(db, order["id"])) == 3


async def test_settled_orders_are_never_touched(client, place_order, db):
    orders = [await place_order() for _ in range(3)]
    confirm, reject, cancel = (o["id"] for o in orders)
    await client.post(f"/internal/v1/orders/{confirm}/confirm", headers=SERVICE_HEADERS)
    await client.post(
        f"/internal/v1/orders/{reject}/reject",
        json={"reason": "no stock", "cause": "insufficient_stock"},
        headers=SERVICE_HEADERS,
    )
    await client.post(f"/v1/orders/{cancel}/cancel")
    for order in orders:
        age(db, order["id"], seconds=3600)
    events_before = outbox_events(db)
    assert (await reconcile(client))["orders"] == {"redriven": 0, "given_up": 0}
    assert outbox_events(db) == events_before


async def test_after_the_last_attempt_the_order_is_rejected_and_its_stock_given_back(
    client, place_order, db
):
    order = await place_order()
    db.execute("UPDATE orders SET redrives = %s WHERE id = %s", [MAX_REDRIVES, order["id"]])
    age(db, order["id"], seconds=31 * 2**MAX_REDRIVES * 2)
    db.execute(
        "UPDATE orders SET redriven_at = now() - interval '2 hours' WHERE id = %s", [order["id"]]
    )

    assert (await reconcile(client))["orders"] == {"redriven": 0, "given_up": 1}
    got = (await client.get(f"/v1/orders/{order['id']}")).json()
    assert got["status"] == "rejected"
    assert got["rejection_reason"] == (
        "The stock reservation did not complete within 32 min (6 attempts); please try again"
    )
    assert outbox_events(db)[-1] == ("order.given_up", {"order_id": order["id"]})

    # A job that reserved late finds the order rejected: its confirm is refused (the job
    # then releases), and its reject keeps the reconciler's reason.
    late = await client.post(f"/internal/v1/orders/{order['id']}/confirm", headers=SERVICE_HEADERS)
    assert_problem(late, 409)
    # Nothing more happens to it.
    assert (await reconcile(client))["orders"] == {"redriven": 0, "given_up": 0}


async def test_two_reconcilers_at_once_announce_each_stalled_order_once(client, place_order, db):
    orders = [await place_order() for _ in range(6)]
    for order in orders:
        age(db, order["id"], seconds=31)
    results = await asyncio.gather(*(reconcile(client) for _ in range(4)))
    assert sum(result["orders"]["redriven"] for result in results) == len(orders)
    for order in orders:
        assert redrives(db, order["id"]) == 1
        assert len(placed_events(db, order["id"])) == 2


@pytest.mark.parametrize("headers", [{}, {"X-Service-Key": "wrong"}], ids=["no key", "wrong key"])
async def test_the_reconciler_needs_the_service_key(client, place_order, db, headers):
    order = await place_order()
    age(db, order["id"], seconds=3600)
    response = await client.post("/internal/v1/reconcile", headers=headers)
    assert_problem(response, 401)
    assert redrives(db, order["id"]) == 0


def age_release(db: psycopg.Connection[Any], order_id: int, *, seconds: float) -> None:
    """Make the order's pending stock release (and its last re-drive) `seconds` older."""
    db.execute(
        "UPDATE orders SET releasing_since = releasing_since - make_interval(secs => %(s)s),"
        " redriven_at = redriven_at - make_interval(secs => %(s)s) WHERE id = %(id)s",
        {"s": seconds, "id": order_id},
    )


def releasing(db: psycopg.Connection[Any], order_id: int) -> bool:
    row = db.execute("SELECT releasing_since FROM orders WHERE id = %s", [order_id]).fetchone()
    assert row is not None
    return row[0] is not None


def release_events(db: psycopg.Connection[Any], order_id: int) -> list[str]:
    return [
        topic
        for topic, payload in outbox_events(db)
        if topic in ("order.cancelled", "order.given_up") and payload["order_id"] == order_id
    ]


async def report_released(client, order_id: int, headers: dict[str, str] = SERVICE_HEADERS):  # type: ignore[no-untyped-def]
    return await client.post(f"/internal/v1/orders/{order_id}/stock-released", headers=headers)


class TestStockReleases:
    async def test_a_release_no_worker_reported_is_announced_again_until_one_does(
        self, client, place_order, db
    ):
        order = await place_order()
        await client.post(f"/internal/v1/orders/{order['id']}/confirm", headers=SERVICE_HEADERS)
        age(db, order["id"], seconds=3600)  # a confirmed order's age does not matter
        await client.post(f"/v1/orders/{order['id']}/cancel")
        assert releasing(db, order["id"])
        assert (await reconcile(client))["releases"] == {"redriven": 0, "given_up": 0}

        age_release(db, order["id"], seconds=31)
        assert (await reconcile(client))["releases"] == {"redriven": 1, "given_up": 0}
        assert release_events(db, order["id"]) == ["order.cancelled", "order.cancelled"]
        assert redrives(db, order["id"]) == 1

        response = await report_released(client, order["id"])
        assert response.status_code == 204, response.text
        assert not releasing(db, order["id"])
        age_release(db, order["id"], seconds=3600)
        assert (await reconcile(client))["releases"]["redriven"] == 0
        # A late repeat of the report changes nothing.
        assert (await report_released(client, order["id"])).status_code == 204
        assert release_events(db, order["id"]) == ["order.cancelled", "order.cancelled"]

    async def test_a_given_up_orders_release_is_announced_again_as_given_up(
        self, client, place_order, db
    ):
        order = await place_order()
        db.execute("UPDATE orders SET redrives = %s WHERE id = %s", [MAX_REDRIVES, order["id"]])
        age(db, order["id"], seconds=31 * 2**MAX_REDRIVES * 2)
        assert (await reconcile(client))["orders"]["given_up"] == 1
        assert releasing(db, order["id"])
        assert redrives(db, order["id"]) == 0  # the release counts its own attempts

        age_release(db, order["id"], seconds=31)
        assert (await reconcile(client))["releases"]["redriven"] == 1
        assert release_events(db, order["id"]) == ["order.given_up", "order.given_up"]

    async def test_a_release_is_never_given_up_and_waits_at_most_the_longest_wait(
        self, client, place_order, db
    ):
        order = await place_order()
        await client.post(f"/v1/orders/{order['id']}/cancel")
        db.execute(
            "UPDATE orders SET redrives = %s, redriven_at = now() WHERE id = %s",
            [MAX_REDRIVES + 3, order["id"]],
        )
        age_release(db, order["id"], seconds=30 * 2**MAX_REDRIVES - 5)
        assert (await reconcile(client))["releases"]["redriven"] == 0
        age_release(db, order["id"], seconds=10)
        assert (await reconcile(client))["releases"] == {"redriven": 1, "given_up": 0}
        got = (await client.get(f"/v1/orders/{order['id']}")).json()
        assert got["status"] == "cancelled"

    async def test_a_report_for_an_unknown_order_is_a_404(self, client):
        assert_problem(await report_released(client, 999_999), 404)

    async def test_the_report_needs_the_service_key(self, client, place_order, db):
        order = await place_order()
        await client.post(f"/v1/orders/{order['id']}/cancel")
        assert_problem(await report_released(client, order["id"], headers={}), 401)
        assert releasing(db, order["id"])
