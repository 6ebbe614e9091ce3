"""`make check-integrity` on databases holding agreeing and disagreeing saga rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devstack import integrity

BOOKS_TABLES = "books, stock_reservations, stock_movements, copy_loans"
ORDERS_TABLES = "orders, order_items, members, borrows, holds"


@pytest.fixture
def books(books_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(books_database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {BOOKS_TABLES} RESTART IDENTITY CASCADE")
        conn.execute(
            "INSERT INTO books (title, author, description, price, stock, copies_total,"
            " copies_available) VALUES ('Dune', 'Herbert', 'Sand.', 9.99, 8, 2, 2)"
        )
        yield conn


@pytest.fixture
def orders(orders_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {ORDERS_TABLES} RESTART IDENTITY CASCADE")
        conn.execute("UPDATE order_counts SET orders = 0")
        conn.execute(
            "INSERT INTO members (name, email, max_loans) VALUES ('Ada', 'ada@example.org', 5)"
        )
        yield conn


def order(orders: psycopg.Connection[Any], status: str, quantity: int = 2) -> int:
    row = orders.execute(
        "INSERT INTO orders (status, total_price, rejection_reason) VALUES (%s, 19.98, %s)"
        " RETURNING id",
        [status, "no stock" if status == "rejected" else None],
    ).fetchone()
    assert row is not None
    orders.execute(
        "INSERT INTO order_items (order_id, book_id, book_title, book_author, quantity,"
        " unit_price, total_price) VALUES (%s, 1, 'Dune', 'Herbert', %s, 9.99, %s * 9.99)",
        [row[0], quantity, quantity],
    )
    return int(row[0])


def reservation(
    books: psycopg.Connection[Any], order_id: int, status: str, *moves: tuple[str, int]
) -> None:
    books.execute(
        "INSERT INTO stock_reservations (reference, status, lines) VALUES (%s, %s, %s)",
        [f"order:{order_id}", status, json.dumps([{"book_id": 1, "quantity": 2}])],
    )
    for kind, quantity in moves:
        # As books does it: the ledger's trigger records the change it is told about.
        books.execute(
            "SELECT set_config('books.stock_kind', %s, false),"
            " set_config('books.stock_reference', %s, false)",
            [kind, f"order:{order_id}"],
        )
        books.execute(
            "UPDATE books SET stock = stock + %s", [-quantity if kind == "reserve" else quantity]
        )
    books.execute("RESET books.stock_kind; RESET books.stock_reference")


def loan(
    books: psycopg.Connection[Any], orders: psycopg.Connection[Any], status: str, state: str
) -> int:
    row = orders.execute(
        "INSERT INTO borrows (member_id, book_id, book_title, book_author, status,"
        " borrowed_at, due_at, returned_at) VALUES (1, 1, 'Dune', 'Herbert', %(s)s, now(),"
        " now() + interval '14 days', CASE WHEN %(s)s = 'returned' THEN now() END)"
        " RETURNING id",
        {"s": status},
    ).fetchone()
    assert row is not None
    books.execute(
        "INSERT INTO copy_loans (reference, book_id, state) VALUES (%s, 1, %s)",
        [f"borrow:{row[0]}", state],
    )
    return int(row[0])


def problems(books_database_url: str, orders_database_url: str) -> dict[str, list[str]]:
    report = integrity.check(books_database_url, orders_database_url)
    return {check: where for check, where in report.problems.items() if where}


def test_agreeing_services_are_clean(
    books, orders, books_database_url: str, orders_database_url: str
) -> None:
    reservation(books, order(orders, "confirmed"), "reserved", ("reserve", 2))
    reservation(books, order(orders, "cancelled"), "released", ("reserve", 2), ("release", 2))
    reservation(books, order(orders, "rejected"), "rejected")
    order(orders, "rejected")  # rejected before books was asked
    # Pending: its job is on its way, whatever books has.
    reservation(books, order(orders, "pending"), "reserved", ("reserve", 2))
    loan(books, orders, "active", "out")
    loan(books, orders, "returned", "in")
    books.execute("UPDATE books SET copies_available = 1")

    report = integrity.check(books_database_url, orders_database_url)
    assert report.clean, report.lines()
    assert report.pending == {"orders": 1, "borrows": 0}
    assert report.lines()[-1] == "integrity: clean"


def test_each_disagreement_is_named_with_where_it_is(
    books, orders, books_database_url: str, orders_database_url: str
) -> None:
    reservation(books, order(orders, "cancelled"), "reserved", ("reserve", 2))
    order(orders, "confirmed")  # confirmed, and books holds nothing for it
    reservation(books, order(orders, "confirmed", quantity=3), "reserved", ("reserve", 2))
    reservation(books, order(orders, "cancelled"), "released", ("reserve", 2), ("release", 1))
    loan(books, orders, "returned", "out")
    books.execute("UPDATE books SET stock = 9")  # recorded: its ledger says 9
    books.execute("ALTER TABLE books DISABLE TRIGGER books_stock_ledger_updated")
    books.execute("UPDATE books SET stock = 7")  # not recorded
    books.execute("ALTER TABLE books ENABLE TRIGGER books_stock_ledger_updated")

    assert problems(books_database_url, orders_database_url) == {
        "stock held exactly by confirmed orders": [
            "order 1 is cancelled, its reservation reserved",
            "order 2 holds none",
        ],
        "reservation lines are the order's lines": ["order 3"],
        "a release gives back exactly what was taken": ["order:4"],
        "a copy out belongs to an active or lost loan or a ready hold": ["borrow:1"],
        "available copies are the copies less those out": ["book 1: 2 available of 2, 1 out"],
        "a book's ledger adds up to its stock": ["book 1: 7 in stock, 9 in its ledger"],
    }


def test_the_command_exits_1_and_says_what_is_wrong(
    books,
    orders,
    books_database_url: str,
    orders_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BOOKS_DATABASE_URL", books_database_url)
    monkeypatch.setenv("ORDERS_DATABASE_URL", orders_database_url)
    assert integrity.main([]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "integrity: clean"

    order(orders, "confirmed")
    assert integrity.main([]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "FAIL stock held exactly by confirmed orders: 1 (order 1 holds none)",
        "integrity: PROBLEMS FOUND",
    ]
