"""Load a lending scenario into the books and orders databases with COPY.

Each database is loaded in one transaction, so an interrupted seed leaves nothing half
done in it; books commits first (its catalog and ledger), then orders (members, holds,
borrows). Once the history is simulated the two databases are loaded side by side, the
books one from a thread: while the orders server takes the borrows and builds their
indexes, Python writes the catalog. Rows are sent a block at a time by a thread of their
own, so the next block is built while the server takes this one.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from books.seed import SeedError, describe
from devstack.seed.copybinary import BORROW_BINARY_COLUMNS
from devstack.seed.lending import BinaryBlock, Block, IdBase, LendingData
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
ORDERS_LENDING_TABLES = (
    "members",
    "borrows",
    "holds",
    "notices",
    "ledger_entries",
    "block_overrides",
    "closings",
)


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


def empty_lending_tables(books: psycopg.Connection[Any], orders: psycopg.Connection[Any]) -> bool:
    """What an earlier scenario loaded: every lending row, and its lendable books (those
    sold since stay in the catalog, no longer lendable). Runs in the callers' transactions;
    True when the catalog was emptied whole."""
    orders.execute(f"TRUNCATE {', '.join(ORDERS_LENDING_TABLES)} RESTART IDENTITY")
    if _empty_catalog(books):
        return True
    books.execute("TRUNCATE copy_loans")
    # Never sold: no order reserved any; their other movements (stock set) go with them.
    unsold = (
        "SELECT id FROM books WHERE copies_total IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM stock_movements"
        "                 WHERE book_id = books.id AND kind = 'reserve')"
    )
    books.execute(f"DELETE FROM stock_movements WHERE book_id IN ({unsold})")  # noqa: S608
    books.execute(f"DELETE FROM books WHERE id IN ({unsold})")  # noqa: S608
    books.execute(
        "UPDATE books SET copies_total = NULL, copies_available = NULL"
        " WHERE copies_total IS NOT NULL"
    )
    return False


def _empty_catalog(books: psycopg.Connection[Any]) -> bool:
    """When every book is lendable and none was ever sold, the books an earlier scenario
    loaded are the whole catalog: TRUNCATE takes them at once, where DELETE would check
    each one's references, and the new rows can be written frozen."""
    row = books.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM books WHERE copies_total IS NULL)"
        " AND NOT EXISTS (SELECT 1 FROM stock_movements WHERE kind = 'reserve')"
    ).fetchone()
    if row != (True,):
        return False
    books.execute("TRUNCATE books, copy_loans, stock_movements, catalog_days")
    # TRUNCATE fires no DELETE trigger: the counts it keeps are emptied here.
    books.execute("UPDATE catalog_counters SET active_books = 0")
    return True


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
        # Both databases' loads count here.
        self.lock = threading.Lock()

    def add(self, rows: int, *, final: bool = False) -> None:
        with self.lock:
            self.done += rows
            if self.progress is not None and (final or self.done - self.reported >= 100_000):
                self.reported = self.done
                self.progress(self.done, max(self.expected, self.done), self.elapsed)

    @contextmanager
    def timed(self, table: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            with self.lock:
                self.table_seconds[table] = self.table_seconds.get(table, 0.0) + seconds

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@contextmanager
def _checked_after(conn: psycopg.Connection[Any], table: str, *, incoming: int) -> Iterator[None]:
    """Drop the table's indexes and foreign keys, and create them again exactly as they
    were (`pg_get_indexdef`, `pg_get_constraintdef`, same names) once the rows are in:
    one sorted build and one validating join instead of millions of index inserts and
    per-row key checks. Only when the load at least doubles the table (else rebuilding
    costs more than it saves); the primary key and unique constraints stay when another
    table's foreign key depends on them. All of it in the caller's transaction, so an
    interrupted seed leaves everything in place."""
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
    keys = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype IN ('p', 'u')"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = %s::regclass)"
        " ORDER BY contype, conname",
        [table, table],
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
        " WHERE indrelid = %s::regclass"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = indexrelid)",
        [table],
    ).fetchall()
    for name, _ in foreign_keys + keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    yield
    for name, definition in keys:
        _add_constraint(conn, table, name, definition)
    for _, definition in indexes:
        conn.execute(definition)
    for name, definition in foreign_keys:
        _add_constraint(conn, table, name, definition)


def _add_constraint(conn: psycopg.Connection[Any], table: str, name: str, definition: str) -> None:
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
    blocks: Iterator[Block] | Iterator[BinaryBlock],
    counter: _Counter,
    *,
    binary: bool = False,
    freeze: bool = False,
) -> int:
    rows = 0
    options = ", ".join(
        option for option, wanted in (("FORMAT BINARY", binary), ("FREEZE", freeze)) if wanted
    )
    statement = f"COPY {table} ({columns}) FROM STDIN" + (f" ({options})" if options else "")
    with (
        conn.cursor() as cursor,
        # A thread sends the blocks, so the next one is built while the server takes this.
        cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy,
    ):
        for data, count in blocks:
            copy.write(data)
            rows += count
            counter.add(count)
    return rows


def _load_books(
    conn: psycopg.Connection[Any],
    data: LendingData,
    counter: _Counter,
    *,
    freeze: bool,
    freeze_books: bool,
) -> dict[str, int]:
    """The catalog with its copies, and the ledger's row of each loan out."""
    rows = {}
    with counter.timed("books"), _checked_after(conn, "books", incoming=data.scenario.books):
        rows["books"] = _copy(
            conn, "books", BOOK_COLUMNS, data.book_blocks(), counter, freeze=freeze_books
        )
    with counter.timed("copy_loans"):
        rows["copy_loans"] = _copy(
            conn, "copy_loans", COPY_LOAN_COLUMNS, data.copy_loan_blocks(), counter, freeze=freeze
        )
    _advance_identity(conn, "books")
    return rows


def _load_orders(
    conn: psycopg.Connection[Any], data: LendingData, counter: _Counter, *, freeze: bool
) -> dict[str, int]:
    """Members, their holds, and the borrows: lent ones, then those that became holds."""
    rows = {}
    with counter.timed("members"):
        rows["members"] = _copy(
            conn, "members", MEMBER_COLUMNS, data.member_blocks(), counter, freeze=freeze
        )
    with counter.timed("holds"):
        hold_blocks, held_borrow_blocks = data.hold_blocks()
        rows["holds"] = _copy(conn, "holds", HOLD_COLUMNS, hold_blocks, counter, freeze=freeze)
    with (
        counter.timed("borrows"),
        _checked_after(conn, "borrows", incoming=data.scenario.borrows),
    ):
        rows["borrows"] = _copy(
            conn,
            "borrows",
            BORROW_BINARY_COLUMNS,
            data.borrow_blocks(),
            counter,
            binary=True,
            freeze=freeze,
        )
        rows["borrows"] += _copy(
            conn, "borrows", BORROW_COLUMNS, held_borrow_blocks, counter, freeze=freeze
        )
    conn.execute(
        "UPDATE members SET loans_out = open.loans FROM ("
        " SELECT member_id, count(*) AS loans FROM borrows"
        " WHERE status IN ('pending', 'active') AND member_id > %s GROUP BY member_id"
        ") AS open WHERE members.id = open.member_id",
        [data.ids.members],
    )
    with counter.timed("fines"):
        rows["ledger_entries"] = _charge_fines(conn, after_borrow=data.ids.borrows)
    for table in ("members", "borrows", "holds", "ledger_entries"):
        _advance_identity(conn, table)
    return rows


def _charge_fines(conn: psycopg.Connection[Any], *, after_borrow: int) -> int:
    """The late fees of the loaded loans in their members' ledgers, worded as
    `orders.lending.ledger.charge_fine` words them. The trigger that adds each entry to
    its member's balance would update a member row per fine: it is off while the
    balances are added up once, in the seed's transaction."""
    conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_to_balance")
    charged = conn.execute(
        "INSERT INTO ledger_entries (member_id, kind, amount, borrow_id, reason, created_at)"
        " SELECT member_id, 'fine', late_fee, id,"
        "  'Late return of “' || book_title || '”, due '"
        "  || to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), returned_at"
        " FROM borrows WHERE late_fee > 0 AND id > %s ORDER BY id",
        [after_borrow],
    ).rowcount
    conn.execute(
        "UPDATE members SET balance = balance + fines.total FROM ("
        " SELECT member_id, sum(late_fee) AS total FROM borrows"
        " WHERE late_fee > 0 AND id > %s GROUP BY member_id"
        ") AS fines WHERE members.id = fines.member_id",
        [after_borrow],
    )
    conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_to_balance")
    return charged


def _simulate(scenario: Scenario, rng: random.Random, counter: _Counter) -> LendingData:
    with counter.timed("borrows"):
        return LendingData(scenario, now=datetime.now(UTC), rng=rng)


def _prepare(
    books: psycopg.Connection[Any], orders: psycopg.Connection[Any], *, truncate: bool, freeze: bool
) -> tuple[IdBase, bool]:
    """Empty (with `truncate`) and lock the tables; the largest ids already in them, and
    whether the catalog was emptied in this transaction."""
    # The commit need not wait for the WAL flush: a crash loses a seed that is rerun anyway.
    # Room to sort the indexes built after the load in memory.
    for conn in (books, orders):
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
    catalog_emptied = False
    if truncate:
        catalog_emptied = empty_lending_tables(books, orders)
    elif freeze:
        # Empty already: emptied again here, in this transaction.
        orders.execute(f"TRUNCATE {', '.join(ORDERS_LENDING_TABLES)}")
        books.execute("TRUNCATE copy_loans")
        catalog_emptied = _empty_catalog(books)
    # Nothing else may take ids while the seed writes its own.
    books.execute("LOCK TABLE books, copy_loans IN EXCLUSIVE MODE")
    orders.execute(f"LOCK TABLE {', '.join(ORDERS_LENDING_TABLES)} IN EXCLUSIVE MODE")
    ids = IdBase(
        books=_max_id(books, "books"),
        members=_max_id(orders, "members"),
        borrows=_max_id(orders, "borrows"),
        holds=_max_id(orders, "holds"),
    )
    return ids, catalog_emptied


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
        expected = scenario.books + scenario.members + scenario.borrows + scenario.holds
        counter = _Counter(expected, progress, started=started)
        # Rows loaded into tables emptied in the same transaction can be written frozen,
        # so that neither the index builds nor VACUUM have to visit them again.
        freeze = truncate or not contents
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed") as pool:
            # The history is simulated whole first (its ids follow time), while the
            # servers empty and lock the tables.
            simulated = pool.submit(_simulate, scenario, rng, counter)
            ids, catalog_emptied = _prepare(books, orders, truncate=truncate, freeze=freeze)
            data = simulated.result()
            data.number(ids)
            counter.expected += len(data.active)
            catalog = pool.submit(
                _load_books, books, data, counter, freeze=freeze, freeze_books=catalog_emptied
            )
            try:
                lending = _load_orders(orders, data, counter, freeze=freeze)
            except BaseException:
                books.cancel_safe()
                raise
            finally:
                # The books connection is closed below only once its thread is done with it.
                catalog.exception()
            loaded = {**lending, **catalog.result()}
        for table in ("members", "borrows", "books", "copy_loans", "holds", "ledger_entries"):
            result.rows[table] = loaded[table]
        books.commit()
        orders.commit()
        counter.add(0, final=True)
        result.table_seconds = counter.table_seconds
        result.seconds = time.perf_counter() - started
        vacuum_started = time.perf_counter()
        # Fresh statistics for the planner, and set visibility maps for index-only scans.
        for conn, tables in (
            (books, ("books", "copy_loans")),
            (orders, ("members", "borrows", "holds", "ledger_entries")),
        ):
            conn.autocommit = True
            for table in tables:
                conn.execute(f"VACUUM (ANALYZE) {table}")
        result.vacuum_seconds = time.perf_counter() - vacuum_started
    return result
