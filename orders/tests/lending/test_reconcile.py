"""The reconciler on borrows: a pending borrow whose check-out job is overdue is announced
again, and given up (rejected, the member's loan slot given back, its copy moved on) after
the last attempt."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.conftest import SERVICE_HEADERS
from tests.lending.conftest import events

MAX_REDRIVES = 5  # the default of ORDERS_SAGA_MAX_REDRIVES


async def reconcile(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await client.post("/internal/v1/reconcile", headers=SERVICE_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()["borrows"]  # type: ignore[no-any-return]


async def request_borrow(
    client, make_member, make_lendable
) -> tuple[dict[str, Any], dict[str, Any]]:  # type: ignore[no-untyped-def]
    member = await make_member()
    book = await make_lendable()
    response = await client.post(
        "/v1/borrows", json={"member_id": member["id"], "book_id": book["id"]}
    )
    assert response.status_code == 201, response.text
    return member, response.json()


def age(db: psycopg.Connection[Any], borrow_id: int, *, seconds: float) -> None:
    db.execute(
        "UPDATE borrows SET requested_at = requested_at - make_interval(secs => %s) WHERE id = %s",
        [seconds, borrow_id],
    )


async def test_a_stalled_borrow_is_announced_again(client, make_member, make_lendable, db):
    _, borrow = await request_borrow(client, make_member, make_lendable)
    assert await reconcile(client) == {"redriven": 0, "given_up": 0}
    age(db, borrow["id"], seconds=31)
    assert await reconcile(client) == {"redriven": 1, "given_up": 0}
    requested = [e for e in events(db, "borrow.requested") if e["borrow_id"] == borrow["id"]]
    assert requested == [{"borrow_id": borrow["id"], "book_id": borrow["book_id"]}] * 2
    assert await reconcile(client) == {"redriven": 0, "given_up": 0}


async def test_active_loans_and_holds_are_never_touched(
    client, make_member, make_lendable, internal, db
):
    _, active = await request_borrow(client, make_member, make_lendable)
    await internal.activate(active["id"])
    _, held = await request_borrow(client, make_member, make_lendable)
    await internal.post(f"/borrows/{held['id']}/hold")
    for borrow in (active, held):
        age(db, borrow["id"], seconds=3600)
    assert await reconcile(client) == {"redriven": 0, "given_up": 0}


async def test_after_the_last_attempt_the_borrow_is_rejected_and_its_slot_given_back(
    client, make_member, make_lendable, db
):
    member, borrow = await request_borrow(client, make_member, make_lendable)
    assert (await client.get(f"/v1/members/{member['id']}")).json()["loans_out"] == 1
    db.execute(
        "UPDATE borrows SET redrives = %s, redriven_at = now() - interval '2 hours',"
        " requested_at = now() - interval '3 hours' WHERE id = %s",
        [MAX_REDRIVES, borrow["id"]],
    )
    assert await reconcile(client) == {"redriven": 0, "given_up": 1}

    got = (await client.get(f"/v1/borrows/{borrow['id']}")).json()
    assert got["status"] == "rejected"
    assert got["rejection_reason"].startswith("The check-out did not complete within 32 min")
    assert (await client.get(f"/v1/members/{member['id']}")).json()["loans_out"] == 0
    assert events(db, "borrow.given_up") == [
        {"borrow_id": borrow["id"], "book_id": borrow["book_id"]}
    ]
    # A check-out that completes late cannot activate it (the job passes the copy on).
    late = await client.post(
        f"/internal/v1/borrows/{borrow['id']}/activate", headers=SERVICE_HEADERS
    )
    assert late.status_code == 409
