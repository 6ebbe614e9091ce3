"""The reconciler end to end: a pending order or borrow whose job was lost is announced
again and settles once; one given up gives back what it held. Real books, orders, relay,
RQ and the workers' own job functions."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
import redis

from devstack.services import ServiceProcess
from tests.conftest import (
    KEY_HEADER,
    Books,
    Orders,
    keyed_client,
    movements,
    queue,
    relay_orders,
    work,
)
from workers import metrics, reconcile

MAX_REDRIVES = 5  # orders' default


@pytest.fixture
def book(books: Books) -> dict[str, Any]:
    return books.create_book(stock=5, title="Dune", price="12.50", copies_total=1)


def settle(connection: redis.Redis, redis_url: str, orders_database_url: str) -> None:
    """Deliver orders' outbox and run the jobs until nothing is left."""
    while relay_orders(orders_database_url, redis_url):
        work(connection, "orders", "borrows")


def lose_every_job(connection: redis.Redis) -> None:
    """What a lost job leaves behind: nothing in any queue (the outbox row is delivered)."""
    for name in ("orders", "borrows"):
        connection.delete(queue(connection, name).key)


def stall(orders_database_url: str, table: str, *, redrives: int = 0) -> None:
    """Every pending row of `table` waited long enough for its next (or last) re-drive."""
    started = "created_at" if table == "orders" else "requested_at"
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {table} SET {started} = now() - interval '3 hours', redrives = %s,"
            " redriven_at = CASE WHEN %s > 0 THEN now() - interval '2 hours' END"
            " WHERE status = 'pending'",
            [redrives, redrives],
        )


def settled_count(saga: str, action: str) -> float:
    return metrics.SAGA_ROWS_SETTLED.labels(saga, action)._value.get()


def test_a_lost_place_order_job_is_redriven_and_the_order_confirmed_once(
    saga_env: dict[str, str],
    connection: redis.Redis,
    redis_url: str,
    orders_database_url: str,
    books_database_url: str,
    books: Books,
    orders: Orders,
    book: dict[str, Any],
) -> None:
    order = orders.place((book["id"], 2))
    assert relay_orders(orders_database_url, redis_url) == 1
    lose_every_job(connection)
    stall(orders_database_url, "orders")
    before = settled_count("order", "redriven")

    summary = reconcile.reconcile({})
    settle(connection, redis_url, orders_database_url)

    assert "orders redriven 1" in summary
    assert settled_count("order", "redriven") == before + 1
    assert orders.get(order["id"])["status"] == "confirmed"
    assert books.stock(book["id"]) == 3
    assert movements(books_database_url, f"order:{order['id']}") == [("reserve", book["id"], 2)]
    # Nothing is left for the next run.
    assert "orders redriven 0" in reconcile.reconcile({})


def test_an_order_reserved_by_a_job_that_died_before_confirming_is_confirmed_by_the_replay(
    saga_env: dict[str, str],
    connection: redis.Redis,
    redis_url: str,
    orders_database_url: str,
    books_database_url: str,
    books: Books,
    orders: Orders,
    book: dict[str, Any],
) -> None:
    order = orders.place((book["id"], 2))
    relay_orders(orders_database_url, redis_url)
    lose_every_job(connection)
    books.reserve(f"order:{order['id']}", (book["id"], 2))  # the job got this far
    stall(orders_database_url, "orders")

    reconcile.reconcile({})
    settle(connection, redis_url, orders_database_url)

    assert orders.get(order["id"])["status"] == "confirmed"
    assert movements(books_database_url, f"order:{order['id']}") == [("reserve", book["id"], 2)]


def test_a_cancelled_orders_lost_release_is_announced_again_and_its_stock_given_back(
    saga_env: dict[str, str],
    connection: redis.Redis,
    redis_url: str,
    orders_database_url: str,
    books_database_url: str,
    books: Books,
    orders: Orders,
    book: dict[str, Any],
) -> None:
    """The cancel_order job failed for good (or was lost): orders has not heard that the
    stock is back, so the reconciler announces the release again."""
    order = orders.place((book["id"], 2))
    settle(connection, redis_url, orders_database_url)
    assert orders.get(order["id"])["status"] == "confirmed"
    orders.cancel(order["id"])
    assert relay_orders(orders_database_url, redis_url) == 1
    lose_every_job(connection)
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE orders SET releasing_since = now() - interval '1 minute' WHERE id = %s",
            [order["id"]],
        )
    assert books.stock(book["id"]) == 3
    before = settled_count("release", "redriven")

    assert "releases redriven 1" in reconcile.reconcile({})
    settle(connection, redis_url, orders_database_url)

    assert settled_count("release", "redriven") == before + 1
    assert books.stock(book["id"]) == 5
    assert movements(books_database_url, f"order:{order['id']}") == [
        ("reserve", book["id"], 2),
        ("release", book["id"], 2),
    ]
    with psycopg.connect(orders_database_url) as conn:
        row = conn.execute(
            "SELECT releasing_since FROM orders WHERE id = %s", [order["id"]]
        ).fetchone()
    assert row == (None,)  # the job reported it: nothing is left for the next run
    assert "releases redriven 0" in reconcile.reconcile({})


def test_an_order_given_up_is_rejected_and_the_stock_it_held_released(
    saga_env: dict[str, str],
    connection: redis.Redis,
    redis_url: str,
    orders_database_url: str,
    books_database_url: str,
    books: Books,
    orders: Orders,
    book: dict[str, Any],
) -> None:
    order = orders.place((book["id"], 2))
    relay_orders(orders_database_url, redis_url)
    lose_every_job(connection)
    books.reserve(f"order:{order['id']}", (book["id"], 2))
    stall(orders_database_url, "orders", redrives=MAX_REDRIVES)
    before = settled_count("order", "given_up")

    assert "orders given_up 1" in reconcile.reconcile({})
    settle(connection, redis_url, orders_database_url)

    assert settled_count("order", "given_up") == before + 1
    assert orders.get(order["id"])["status"] == "rejected"
    assert books.stock(book["id"]) == 5
    assert movements(books_database_url, f"order:{order['id']}") == [
        ("reserve", book["id"], 2),
        ("release", book["id"], 2),
    ]


def test_a_borrow_given_up_after_its_copy_was_checked_out_puts_the_copy_back(
    saga_env: dict[str, str],
    connection: redis.Redis,
    redis_url: str,
    orders_database_url: str,
    orders_service: ServiceProcess,
    books_service: ServiceProcess,
    book: dict[str, Any],
    admin_key: str,
) -> None:
    with keyed_client(orders_service.url, admin_key) as lending:
        member = lending.post("/v1/members", json={"name": "Ada", "email": "ada@example.org"})
        borrow = lending.post(
            "/v1/borrows", json={"member_id": member.json()["id"], "book_id": book["id"]}
        ).json()
    relay_orders(orders_database_url, redis_url)
    lose_every_job(connection)
    with httpx.Client(base_url=books_service.url, headers=KEY_HEADER) as books_http:
        # The check-out job got this far, and died before telling orders.
        books_http.post(
            "/internal/v1/copies/checkouts",
            json={"reference": f"borrow:{borrow['id']}", "book_id": book["id"]},
        ).raise_for_status()
        assert books_http.get(f"/v1/books/{book['id']}").json()["copies_available"] == 0
        stall(orders_database_url, "borrows", redrives=MAX_REDRIVES)

        assert "borrows given_up 1" in reconcile.reconcile({})
        settle(connection, redis_url, orders_database_url)

        assert books_http.get(f"/v1/books/{book['id']}").json()["copies_available"] == 1
    with keyed_client(orders_service.url, admin_key) as lending:
        assert lending.get(f"/v1/borrows/{borrow['id']}").json()["status"] == "rejected"


def test_each_run_schedules_the_next_one(saga_env: dict[str, str], connection: redis.Redis) -> None:
    job = reconcile.RECONCILE.schedule(connection)
    assert job is not None
    work(connection, "maintenance")
    next_slot = f"reconcile-{reconcile.RECONCILE.current_slot() + 1}"
    assert next_slot in queue(connection, "maintenance").scheduled_job_registry.get_job_ids()
