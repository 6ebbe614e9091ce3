"""`make check-integrity`: do books and orders agree on every settled order and loan?

The two services own a database each, and the saga between them is eventually consistent:
while a job is on its way, an order may be pending with its stock already reserved. Once
it has settled, these must hold (each is one check below):

- stock: a reservation `order:N` holds stock exactly when order N is confirmed, for the
  lines of the order; if released, its ledger gave back exactly what it took; the sum of
  a book's ledger is its stock;
- copies: a copy is out under `borrow:N` exactly when loan N is active or lost (a lost
  copy is nobody's to lend until it comes back), under `hold:N`
  exactly when hold N is ready; a book's available copies are its copies less those out.

Pending orders and borrows are counted, not judged: their jobs may be running. The check
reads both databases (at some cost on a large one: an operator's tool, not a probe) and
exits 1 when anything disagrees, printing what and where.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from devstack.run import StackConfig, stack_database_url

SHOWN = 10


@dataclass
class Report:
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    pending: dict[str, int] = field(default_factory=dict)

    def add(self, check: str, where: Iterable[str]) -> None:
        self.problems[check].extend(where)

    @property
    def clean(self) -> bool:
        return not any(self.problems.values())

    def lines(self) -> list[str]:
        out = [
            f"pending (not judged): {self.pending.get('orders', 0)} orders, "
            f"{self.pending.get('borrows', 0)} borrows"
        ]
        for check, where in self.problems.items():
            if where:
                shown = ", ".join(where[:SHOWN]) + (" …" if len(where) > SHOWN else "")
                out.append(f"FAIL {check}: {len(where)} ({shown})")
        out.append("integrity: clean" if self.clean else "integrity: PROBLEMS FOUND")
        return out


def _rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()


def check_stock(
    books: psycopg.Connection[Any], orders: psycopg.Connection[Any], report: Report
) -> None:
    statuses = dict(_rows(orders, "SELECT id, status FROM orders"))
    report.pending["orders"] = sum(1 for status in statuses.values() if status == "pending")
    items: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for order_id, book_id, quantity in _rows(
        orders, "SELECT order_id, book_id, quantity FROM order_items ORDER BY order_id, book_id"
    ):
        items[order_id].append((book_id, quantity))
    reservations = {
        int(reference.removeprefix("order:")): (status, lines)
        for reference, status, lines in _rows(
            books,
            "SELECT reference, status, lines FROM stock_reservations"
            " WHERE reference LIKE 'order:%'",
        )
    }
    ledger: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for reference, kind, book_id, quantity in _rows(
        books,
        "SELECT reference, kind, book_id, quantity FROM stock_movements"
        " WHERE reference LIKE 'order:%' ORDER BY reference, book_id",
    ):
        ledger[int(reference.removeprefix("order:"))][kind].append((book_id, quantity))

    for order_id, (status, lines) in reservations.items():
        order_status = statuses.get(order_id)
        if order_status == "pending":
            continue
        # Released before anything was reserved under it: books fences the reference so
        # that a reservation arriving later takes nothing. It never held stock.
        fence = status == "released" and not lines
        if order_status is None:
            if not fence:
                report.add(
                    "stock reserved for an order orders does not have", [f"order:{order_id}"]
                )
            continue
        if (status == "reserved") != (order_status == "confirmed"):
            report.add(
                "stock held exactly by confirmed orders",
                [f"order {order_id} is {order_status}, its reservation {status}"],
            )
        if (
            not fence
            and sorted((line["book_id"], line["quantity"]) for line in lines) != items[order_id]
        ):
            report.add("reservation lines are the order's lines", [f"order {order_id}"])
        # Each line is taken and given back at most once: books' unique key
        # (reference, book_id, kind) on its ledger sees to that.
        moved = ledger.get(order_id, {})
        reserved, released = moved.get("reserve", []), moved.get("release", [])
        if (status == "released" and sorted(released) != sorted(reserved)) or (
            status != "released" and released
        ):
            report.add("a release gives back exactly what was taken", [f"order:{order_id}"])
    for order_id, status in statuses.items():
        if status == "confirmed" and order_id not in reservations:
            report.add("stock held exactly by confirmed orders", [f"order {order_id} holds none"])
    report.add(
        "a book's ledger adds up to its stock",
        [
            f"book {book_id}: {stock} in stock, {moved} in its ledger"
            for book_id, stock, moved in _rows(
                books,
                "SELECT b.id, b.stock, coalesce(sum(m.delta), 0) FROM books b"
                " LEFT JOIN stock_movements m ON m.book_id = b.id GROUP BY b.id"
                " HAVING coalesce(b.stock, 0) <> coalesce(sum(m.delta), 0)",
            )
        ],
    )


def check_copies(
    books: psycopg.Connection[Any], orders: psycopg.Connection[Any], report: Report
) -> None:
    out = {
        reference
        for (reference,) in _rows(books, "SELECT reference FROM copy_loans WHERE state = 'out'")
    }
    borrows = dict(_rows(orders, "SELECT id, status FROM borrows"))
    holds = dict(_rows(orders, "SELECT id, status FROM holds"))
    report.pending["borrows"] = sum(1 for status in borrows.values() if status == "pending")
    expected = {f"borrow:{i}" for i, status in borrows.items() if status in ("active", "lost")} | {
        f"hold:{i}" for i, status in holds.items() if status == "ready"
    }
    in_flight = {f"borrow:{i}" for i, status in borrows.items() if status == "pending"}
    report.add("an active or lost loan has its copy out", sorted(expected - out))
    report.add(
        "a copy out belongs to an active or lost loan or a ready hold",
        sorted(out - expected - in_flight),
    )
    report.add(
        "available copies are the copies less those out",
        [
            f"book {book_id}: {available} available of {total}, {lent} out"
            for book_id, total, available, lent in _rows(
                books,
                "SELECT b.id, b.copies_total, b.copies_available, count(c.reference)"
                " FROM books b LEFT JOIN copy_loans c ON c.book_id = b.id AND c.state = 'out'"
                " WHERE b.copies_total IS NOT NULL"
                " GROUP BY b.id HAVING b.copies_available <> b.copies_total - count(c.reference)",
            )
        ],
    )


def check(books_url: str, orders_url: str) -> Report:
    report = Report()
    with psycopg.connect(books_url) as books, psycopg.connect(orders_url) as orders:
        # One snapshot per database: each side is read as of one instant.
        for conn in (books, orders):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        check_stock(books, orders, report)
        check_copies(books, orders, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make check-integrity", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    config = StackConfig.from_env()
    report = check(stack_database_url(config, "books"), stack_database_url(config, "orders"))
    print("\n".join(report.lines()))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
