"""The stock ledger: every change of a book's stock is a movement with a reason, whoever
makes it, and adjustments that cannot drift (a change, or a set against what was seen)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import assert_problem
from tests.inventory.conftest import stock_of, unbalanced_books


def ledger_of(db, book_id: int) -> list[tuple[str, int, str | None]]:  # type: ignore[no-untyped-def]
    rows = db.execute(
        "SELECT kind, delta, reason FROM stock_movements WHERE book_id = %s ORDER BY id",
        [book_id],
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


async def adjust(client: httpx.AsyncClient, book_id: int, **body: Any) -> httpx.Response:
    return await client.post(f"/v1/books/{book_id}/stock-adjustments", json=body)


async def test_a_book_added_with_stock_opens_its_ledger(make_book, db) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=10)
    assert ledger_of(db, book["id"]) == [("opening", 10, "the book was added with stock")]
    untracked = await make_book(stock=None)
    assert ledger_of(db, untracked["id"]) == []


async def test_a_change_adds_or_removes_with_its_reason(client, make_book, db) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=10)
    response = await adjust(client, book["id"], change=5, reason="  delivery 4711 ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stock"] == 15
    assert body["movement"]["kind"] == "restock"
    assert body["movement"]["change"] == 5
    assert body["movement"]["reason"] == "delivery 4711"
    assert body["movement"]["reference"] is None

    removed = (await adjust(client, book["id"], change=-3, reason="water damage")).json()
    assert (removed["stock"], removed["movement"]["kind"], removed["movement"]["change"]) == (
        12,
        "removal",
        -3,
    )
    assert (await client.get(f"/v1/books/{book['id']}")).json()["stock"] == 12
    assert unbalanced_books(db) == []


async def test_a_set_needs_the_stock_it_replaces(client, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=10)
    # The counter saw 10; an order took 2 while they counted 9 on the shelf.
    assert (await reserve("order:1", (book["id"], 2))).json()["status"] == "reserved"
    stale = await adjust(client, book["id"], set=9, expected=10, reason="stock count")
    problem = assert_problem(stale, 409)
    assert problem["error"] == "STOCK_CHANGED"
    assert problem["detail"] == (
        f"Book {book['id']} has 8 in stock, not the 10 expected: it moved since it was read."
        " Count again, or send the difference as a `change`."
    )
    assert stock_of(db, book["id"]) == 8

    counted = (await adjust(client, book["id"], set=7, expected=8, reason="stock count")).json()
    assert counted["stock"] == 7
    assert counted["movement"]["kind"] == "removal"
    assert counted["movement"]["change"] == -1
    # A count that finds what was expected moves nothing.
    same = await adjust(client, book["id"], set=7, expected=7, reason="stock count")
    assert same.json() == {"stock": 7, "movement": None}
    assert [kind for kind, _, _ in ledger_of(db, book["id"])] == ["opening", "reserve", "removal"]
    assert unbalanced_books(db) == []


async def test_restock_then_cancel_does_not_drift(  # type: ignore[no-untyped-def]
    client, make_book, reserve, release, db
) -> None:
    """The drift of an absolute set: restock-to-10 then the cancel of an order of 2 left 12.
    A change adds what came in, whatever orders did meanwhile."""
    book = await make_book(stock=8)
    await reserve("order:1", (book["id"], 2))  # 6 left
    await adjust(client, book["id"], change=4, reason="delivery")  # 4 came in: 10
    await release("order:1")  # the order is cancelled: its 2 come back
    assert stock_of(db, book["id"]) == 12 == 8 - 2 + 4 + 2
    assert unbalanced_books(db) == []


async def test_an_update_of_the_book_that_sets_stock_is_in_the_ledger(
    client, make_book, db
) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=10)
    await client.patch(f"/v1/books/{book['id']}", json={"stock": 4})
    await client.patch(f"/v1/books/{book['id']}", json={"title": "Renamed"})  # no movement
    await client.patch(f"/v1/books/{book['id']}", json={"stock": None})
    await client.put(f"/v1/books/{book['id']}", json={"stock": 3})
    assert ledger_of(db, book["id"]) == [
        ("opening", 10, "the book was added with stock"),
        ("removal", -6, "stock set to 4 by an update of the book"),
        ("untracked", -4, "stock set to untracked by an update of the book"),
        ("opening", 3, "stock set to 3 by an update of the book"),
    ]
    assert unbalanced_books(db) == []


async def test_refusals_write_nothing(client, make_book, db) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=3)
    untracked = await make_book(stock=None)
    deleted = await make_book(stock=5)
    await client.delete(f"/v1/books/{deleted['id']}")
    before = db.execute("SELECT count(*) FROM stock_movements").fetchone()

    negative = assert_problem(await adjust(client, book["id"], change=-4, reason="x"), 409)
    assert negative["error"] == "STOCK_WOULD_BE_NEGATIVE"
    not_tracked = assert_problem(await adjust(client, untracked["id"], change=1, reason="x"), 409)
    assert not_tracked["error"] == "STOCK_NOT_TRACKED"
    for missing in (deleted["id"], 10**9):
        assert_problem(await adjust(client, missing, change=1, reason="x"), 404)

    assert db.execute("SELECT count(*) FROM stock_movements").fetchone() == before
    assert stock_of(db, book["id"]) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"change": 1, "set": 2, "expected": 1, "reason": "x"},
        {"change": 0, "reason": "x"},
        {"set": 2, "reason": "x"},
        {"expected": 2, "change": 1, "reason": "x"},
        {"change": 1},
        {"change": 1, "reason": "   "},
        {"change": 1, "reason": "a\u0000b"},
        {"change": "1", "reason": "x"},
        {"set": -1, "expected": 0, "reason": "x"},
        {"change": 1, "reason": "x", "unknown": True},
    ],
    ids=[
        "change-and-set",
        "zero",
        "set-without-expected",
        "expected-without-set",
        "no-reason",
        "blank-reason",
        "nul-in-reason",
        "string-change",
        "negative-set",
        "unknown-field",
    ],
)
async def test_bad_adjustments_are_422(client, make_book, db, body) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=3)
    assert_problem(await adjust(client, book["id"], **body), 422)
    assert ledger_of(db, book["id"]) == [("opening", 3, "the book was added with stock")]


async def test_adjustments_and_reservations_at_once_add_up(client, make_book, reserve, db) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=10)
    responses = await asyncio.gather(
        *(adjust(client, book["id"], change=1, reason="delivery") for _ in range(20)),
        *(reserve(f"order:{n}", (book["id"], 1)) for n in range(20)),
    )
    assert Counter(response.status_code for response in responses) == {200: 40}
    reserved = sum(1 for r in responses[20:] if r.json()["status"] == "reserved")
    assert stock_of(db, book["id"]) == 10 + 20 - reserved
    assert unbalanced_books(db) == []


async def test_the_ledger_reads_newest_first_in_pages(client, make_book) -> None:  # type: ignore[no-untyped-def]
    book = await make_book(stock=1)
    for n in range(3):
        await adjust(client, book["id"], change=n + 1, reason=f"delivery {n}")
    response = await client.get(f"/v1/books/{book['id']}/stock-movements?limit=2")
    assert response.status_code == 200
    assert response.headers["x-total-count"] == "4"
    assert 'rel="next"' in response.headers["link"]
    page = response.json()
    assert [m["reason"] for m in page["data"]] == ["delivery 2", "delivery 1"]
    assert sum(m["change"] for m in page["data"]) == 5
    last = (await client.get(f"/v1/books/{book['id']}/stock-movements?offset=2")).json()
    assert [m["kind"] for m in last["data"]] == ["restock", "opening"]
    assert_problem(await client.get("/v1/books/999999/stock-movements"), 404)
