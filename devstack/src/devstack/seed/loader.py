"""Load a lending scenario into the books and orders databases with COPY.

Each database is loaded in one transaction, so an interrupted seed leaves nothing half
done in it; books commits first (its catalog and ledger), then orders (members, borrows,
holds). Rows are COPY text written a block at a time while the next block is being
simulated: the server indexes one block while Python builds the next.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from books.seed import SeedError, describe
from devstack.seed.lending import Block, IdBase, LendingData
from devstack.seed.scenarios import Scenario

Progress = Callable[[int, int, float], None]

BOOK_COLUMNS = (
    "id, title, author, description, price, created_at, updated_at, copies_total, copies_available"
)
COPY_LOAN_COLUMNS = "reference, book_id, state, passed_to, created_at, updated_at"
MEMBER_COLUMNS = "id, name, email, status, max_loans, loans_out, created_at, updated_at"
BORROW_COLUMNS = (
    "id, member_id, book_id, book_title, book_author, status, rejection_reason, hold_id,"
    " requested_at, borrowed_at, due_at, returned_at, renewals, late_fee, updated_at"
)
HOLD_COLUMNS = (
    "id, member_id, book_id, book_title, book_author, status, copy_from, borrow_id,"
    " created_at, ready_at, pickup_by, closed_at, updated_at"
)
ORDERS_LENDING_TABLES = ("members", "borrows", "holds", "notices")


@dataclass
class LoadResult:
    scenario: str
    rows: dict[str, int] = field(default_factory=dict)
    # Per table: building its rows, sending them and (re)building its indexes.
    table_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    vacuum_seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else float(self.total_rows)


def _connect(url: str, name: str, tables: Iterable[str]) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(url, connect_timeout=5, application_name="devstack.seed")
    except psycopg.OperationalError as error:
        reason = (str(error).strip().splitlines() or ["no answer"])[0]
        raise SeedError(
            f"cannot reach the {name} database at {describe(url)} ({reason}).\n"
            f"Start the stack with `make run`, or point {name.upper()}_DATABASE_URL at a "
            "running database."
        ) from None
    missing = [
        table
        for table in tables
        if conn.execute("SELECT to_regclass(%s) IS NULL", [table]).fetchone() != (False,)
    ]
    conn.rollback()
    if missing:
        conn.close()
        raise SeedError(
            f"the {name} database at {describe(url)} has no {', '.join(missing)}: run "
            "`make migrate` (or start the stack with `make run`, which migrates)."
        )
    return conn


def _count(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def lending_contents(
    books: psycopg.Connection[Any], orders: psycopg.Connection[Any]
) -> dict[str, int]:
    """Rows already in the lending tables, by table (only the non-empty ones)."""
    counts = {
        table: _count(orders, f"SELECT count(*) FROM {table}")  # noqa: S608 - our own names
        for table in ORDERS_LENDING_TABLES
    }
    counts["copy_loans"] = _count(books, "SELECT count(*) FROM copy_loans")
    counts["lendable books"] = _count(
        books, "SELECT count(*) FROM books WHERE copies_total IS NOT NULL"
    )
    return {table: count for table, count in counts.items() if count}


def empty_lending_tables(books: psycopg.Connection[Any], orders: psycopg.Connection[Any]) -> None:
    """What an earlier scenario loaded: every lending row, and its lendable books (those
    sold since stay in the catalog, no longer lendable). Runs in the callers' transactions."""
    orders.execute(f"TRUNCATE {', '.join(ORDERS_LENDING_TABLES)} RESTART IDENTITY")
    books.execute("TRUNCATE copy_loans")
    books.execute(
        "DELETE FROM books WHERE copies_total IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM stock_movements WHERE book_id = books.id)"
    )
    books.execute(
        "UPDATE books SET copies_total = NULL, copies_available = NULL"
        " WHERE copies_total IS NOT NULL"
    )


def _max_id(conn: psycopg.Connection[Any], table: str) -> int:
    return _count(conn, f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608


def _advance_identity(conn: psycopg.Connection[Any], table: str) -> None:
    """The rows came with their ids: the identity goes on after the largest one."""
    conn.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"  # noqa: S608
        " HAVING max(id) IS NOT NULL"
    )


class _Counter:
    def __init__(self, expected: int, progress: Progress | None, *, started: float) -> None:
        self.expected = expected
        self.progress = progress
        self.done = 0
        self.started = started
        self.table_seconds: dict[str, float] = {}
        self.reported = 0

    def add(self, rows: int, *, final: bool = False) -> None:
        self.done += rows
        if self.progress is not None and (final or self.done - self.reported >= 100_000):
            self.reported = self.done
            self.progress(self.done, max(self.expected, self.done), self.elapsed)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@contextmanager
def _checked_after(conn: psycopg.Connection[Any], table: str, *, incoming: int) -> Iterator[None]:
    """Drop the table's secondary indexes and foreign keys, and create them again exactly as
    they were (`pg_get_indexdef`, `pg_get_constraintdef`, same names) once the rows are in:
    one sorted build and one validating join instead of millions of index inserts and
    per-row key checks. Only when the load at least doubles the table (else rebuilding
    costs more than it saves); primary keys and unique constraints stay. All of it in the
    caller's transaction, so an interrupted seed leaves everything in place."""
    row = conn.execute(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass", [table]
    ).fetchone()
    present = row[0] if row else 0
    if incoming < max(present, 10_000):
        yield
        return
    foreign_keys = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [table],
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
        " WHERE indrelid = %s::regclass"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = indexrelid)",
        [table],
    ).fetchall()
    for name, _ in foreign_keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    yield
    for _, definition in indexes:
        conn.execute(definition)
    for name, definition in foreign_keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                sql.Identifier(table), sql.Identifier(name)
            )
            + sql.SQL(definition)
        )


def _copy(
    conn: psycopg.Connection[Any],
    table: str,
    columns: str,
    blocks: Iterator[Block],
    counter: _Counter,
    *,
    incoming: int = 0,
) -> int:
    rows = 0
    started = time.perf_counter()
    statement = f"COPY {table} ({columns}) FROM STDIN"
    with (
        _checked_after(conn, table, incoming=incoming),
        conn.cursor() as cursor,
        # A thread sends the blocks, so the next one is built while the server takes this.
        cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy,
    ):
        for text, count in blocks:
            copy.write(text)
            rows += count
            counter.add(count)
    seconds = time.perf_counter() - started
    counter.table_seconds[table] = counter.table_seconds.get(table, 0.0) + seconds
    return rows


def seed_lending(
    scenario: Scenario,
    *,
    books_url: str,
    orders_url: str,
    force: bool = False,
    truncate: bool = False,
    random_seed: int | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Load `scenario` into the two databases, then VACUUM ANALYZE what it loaded."""
    result = LoadResult(scenario.name)
    rng = random.Random(random_seed)  # noqa: S311 - demo data, not secrets
    with (
        _connect(books_url, "books", ("books", "copy_loans")) as books,
        _connect(orders_url, "orders", ORDERS_LENDING_TABLES) as orders,
    ):
        contents = lending_contents(books, orders)
        if contents and not (force or truncate):
            listed = ", ".join(f"{count:,} {table}" for table, count in contents.items())
            books.rollback()
            orders.rollback()
            raise SeedError(
                f"the lending tables already hold data ({listed}).\n"
                f"Add --truncate to empty them first (`make seed SCENARIO={scenario.name} "
                f"TRUNCATE=1`), or --force to add the scenario beside that data "
                f"(`python -m devstack.seed --scenario {scenario.name} --force`)."
            )
        started = time.perf_counter()
        # The commit need not wait for the WAL flush: a crash loses a seed that is rerun anyway.
        # Room to sort the indexes built after the load.
        for conn in (books, orders):
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET maintenance_work_mem = '256MB'")
        if truncate:
            empty_lending_tables(books, orders)
        # Nothing else may take ids while the seed writes its own.
        books.execute("LOCK TABLE books, copy_loans IN EXCLUSIVE MODE")
        orders.execute(f"LOCK TABLE {', '.join(ORDERS_LENDING_TABLES)} IN EXCLUSIVE MODE")
        ids = IdBase(
            books=_max_id(books, "books"),
            members=_max_id(orders, "members"),
            borrows=_max_id(orders, "borrows"),
            holds=_max_id(orders, "holds"),
        )
        data = LendingData(scenario, ids=ids, now=datetime.now(UTC), rng=rng)
        expected = scenario.books + scenario.members + scenario.borrows + scenario.holds
        counter = _Counter(expected, progress, started=started)
        rows = result.rows
        rows["members"] = _copy(orders, "members", MEMBER_COLUMNS, data.member_blocks(), counter)
        rows["borrows"] = _copy(
            orders,
            "borrows",
            BORROW_COLUMNS,
            data.borrow_blocks(),
            counter,
            incoming=scenario.borrows,
        )
        rows["books"] = _copy(
            books, "books", BOOK_COLUMNS, data.book_blocks(), counter, incoming=scenario.books
        )
        rows["copy_loans"] = _copy(
            books, "copy_loans", COPY_LOAN_COLUMNS, data.copy_loan_blocks(), counter
        )
        hold_blocks, held_borrow_blocks = data.hold_blocks()
        rows["holds"] = _copy(orders, "holds", HOLD_COLUMNS, hold_blocks, counter)
        rows["borrows"] += _copy(orders, "borrows", BORROW_COLUMNS, held_borrow_blocks, counter)
        orders.execute(
            "UPDATE members SET loans_out = open.loans FROM ("
            " SELECT member_id, count(*) AS loans FROM borrows"
            " WHERE status IN ('pending', 'active') AND member_id > %s GROUP BY member_id"
            ") AS open WHERE members.id = open.member_id",
            [ids.members],
        )
        _advance_identity(books, "books")
        for table in ("members", "borrows", "holds"):
            _advance_identity(orders, table)
        books.commit()
        orders.commit()
        counter.add(0, final=True)
        result.table_seconds = counter.table_seconds
        result.seconds = time.perf_counter() - started
        vacuum_started = time.perf_counter()
        # Fresh statistics for the planner, and set visibility maps for index-only scans.
        for conn, tables in (
            (books, ("books", "copy_loans")),
            (orders, ("members", "borrows", "holds")),
        ):
            conn.autocommit = True
            for table in tables:
                conn.execute(f"VACUUM (ANALYZE) {table}")
        result.vacuum_seconds = time.perf_counter() - vacuum_started
    return result
