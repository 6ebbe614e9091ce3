"""`make seed SCENARIO=...` (devstack.seed): lending data consistent across both databases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from books.config import get_settings as books_settings
from books.seed import SeedError
from devstack.pytest_plugin import drop_database, migrated_database
from devstack.seed import SCENARIOS, Scenario, seed_lending
from devstack.seed.__main__ import main as seed_main
from devstack.seed.loader import ORDERS_LENDING_TABLES
from orders.config import get_settings as orders_settings

MINIMAL = SCENARIOS["minimal"]


@dataclass(frozen=True)
class Databases:
    books: str
    orders: str


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """The command reads its databases from the environment each test sets."""
    books_settings.cache_clear()
    orders_settings.cache_clear()
    yield
    books_settings.cache_clear()
    orders_settings.cache_clear()


@pytest.fixture(scope="module")
def migrated(postgres_server_url: str) -> Iterator[Databases]:
    databases = Databases(
        books=migrated_database(postgres_server_url, "books"),
        orders=migrated_database(postgres_server_url, "orders"),
    )
    yield databases
    drop_database(postgres_server_url, databases.books)
    drop_database(postgres_server_url, databases.orders)


@pytest.fixture
def dbs(migrated: Databases) -> Databases:
    """Both databases with empty catalog and lending tables."""
    with psycopg.connect(migrated.books, autocommit=True) as conn:
        conn.execute("TRUNCATE books, catalog_days RESTART IDENTITY CASCADE")
        conn.execute("UPDATE catalog_counters SET active_books = 0")
    with psycopg.connect(migrated.orders, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(ORDERS_LENDING_TABLES)} RESTART IDENTITY")
    return migrated


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def seed(dbs: Databases, scenario: Scenario = MINIMAL, **options: Any) -> dict[str, int]:
    result = seed_lending(scenario, books_url=dbs.books, orders_url=dbs.orders, **options)
    return result.rows


def assert_consistent(dbs: Databases) -> None:
    """The invariants the lending services keep, checked across both databases."""
    active_by_book = Counter(
        dict(
            rows(
                dbs.orders,
                "SELECT book_id, count(*) FROM borrows WHERE status = 'active' GROUP BY 1",
            )
        )
    )
    out_by_book = Counter(
        dict(
            rows(
                dbs.books, "SELECT book_id, count(*) FROM copy_loans WHERE state = 'out' GROUP BY 1"
            )
        )
    )
    for book_id, total, available in rows(
        dbs.books, "SELECT id, copies_total, copies_available FROM books"
    ):
        assert 0 <= available <= total, book_id
        assert total - available == active_by_book[book_id], book_id
        assert total - available == out_by_book[book_id], book_id
    references = {
        reference
        for (reference,) in rows(dbs.books, "SELECT reference FROM copy_loans WHERE state = 'out'")
    }
    active = {
        f"borrow:{borrow_id}"
        for (borrow_id,) in rows(dbs.orders, "SELECT id FROM borrows WHERE status = 'active'")
    }
    assert references == active
    mismatched = rows(
        dbs.orders,
        "SELECT m.id FROM members m WHERE m.loans_out > m.max_loans OR m.loans_out <> ("
        " SELECT count(*) FROM borrows b WHERE b.member_id = m.id"
        " AND b.status IN ('pending', 'active'))",
    )
    assert mismatched == []
    # Each late fee is one fine in its member's ledger, and each balance its ledger's sum.
    assert (
        rows(
            dbs.orders,
            "SELECT b.id FROM borrows b LEFT JOIN ledger_entries e"
            " ON e.borrow_id = b.id AND e.kind = 'fine'"
            " WHERE b.late_fee > 0 AND e.amount IS DISTINCT FROM b.late_fee",
        )
        == []
    )
    assert (
        rows(
            dbs.orders,
            "SELECT m.id FROM members m LEFT JOIN ledger_entries e ON e.member_id = m.id"
            " GROUP BY m.id HAVING m.balance <> coalesce(sum(e.amount), 0)",
        )
        == []
    )
    assert rows(dbs.orders, "SELECT count(*) > 0 FROM ledger_entries") == [(True,)]
    available = dict(rows(dbs.books, "SELECT id, copies_available FROM books"))
    waiting = rows(dbs.orders, "SELECT book_id FROM holds WHERE status = 'waiting'")
    assert all(available[book_id] == 0 for (book_id,) in waiting)
    assert rows(dbs.books, "SELECT active_books FROM catalog_counters") == rows(
        dbs.books, "SELECT count(*) FROM books WHERE active"
    )


class TestMinimalScenario:
    def test_loads_a_few_dozen_of_each(self, dbs: Databases) -> None:
        loaded = seed(dbs, random_seed=1)
        assert loaded["books"] == MINIMAL.books
        assert loaded["members"] == MINIMAL.members
        assert loaded["borrows"] == MINIMAL.borrows
        assert loaded["holds"] == MINIMAL.holds
        statuses = dict(rows(dbs.orders, "SELECT status, count(*) FROM borrows GROUP BY 1"))
        assert statuses["returned"] > 0
        assert statuses["active"] > 0
        assert statuses["held"] == MINIMAL.holds

    @pytest.mark.parametrize("random_seed", [1, 2, 3])
    def test_copies_loans_and_ledger_agree(self, dbs: Databases, random_seed: int) -> None:
        seed(dbs, random_seed=random_seed)
        assert_consistent(dbs)

    def test_returned_loans_have_dates_and_late_ones_a_fee(self, dbs: Databases) -> None:
        seed(dbs, random_seed=4)
        late = rows(
            dbs.orders,
            "SELECT count(*) FILTER (WHERE returned_at > due_at AND late_fee IS NULL),"
            " count(*) FILTER (WHERE returned_at <= due_at AND late_fee IS NOT NULL),"
            " count(*) FILTER (WHERE returned_at < borrowed_at OR borrowed_at < requested_at)"
            " FROM borrows WHERE status = 'returned'",
        )
        assert late == [(0, 0, 0)]

    def test_holds_queue_in_arrival_order(self, dbs: Databases) -> None:
        seed(dbs, random_seed=5)
        holds = rows(dbs.orders, "SELECT id, created_at FROM holds ORDER BY id")
        assert [created for _, created in holds] == sorted(created for _, created in holds)
        linked = rows(
            dbs.orders,
            "SELECT count(*) FROM holds h JOIN borrows b ON b.hold_id = h.id"
            " AND b.member_id = h.member_id AND b.book_id = h.book_id AND b.status = 'held'",
        )
        assert linked == [(MINIMAL.holds,)]

    def test_identities_continue_after_the_seed(self, dbs: Databases) -> None:
        seed(dbs, random_seed=6)
        with psycopg.connect(dbs.orders) as conn:
            row = conn.execute(
                "INSERT INTO members (name, email, max_loans) VALUES ('N', 'n@example.org', 5)"
                " RETURNING id"
            ).fetchone()
        assert row == (MINIMAL.members + 1,)


class TestNonEmptyLendingTables:
    def test_refuses_and_says_what_to_do(self, dbs: Databases) -> None:
        seed(dbs, random_seed=1)
        with pytest.raises(SeedError, match="--truncate") as raised:
            seed(dbs, random_seed=1)
        assert "make seed SCENARIO=minimal TRUNCATE=1" in str(raised.value)
        assert rows(dbs.orders, "SELECT count(*) FROM members") == [(MINIMAL.members,)]

    def test_truncate_replaces_the_lending_data(self, dbs: Databases) -> None:
        seed(dbs, random_seed=1)
        seed(dbs, random_seed=2, truncate=True)
        assert rows(dbs.orders, "SELECT count(*) FROM borrows") == [(MINIMAL.borrows,)]
        assert rows(dbs.books, "SELECT count(*) FROM books") == [(MINIMAL.books,)]
        assert_consistent(dbs)

    def test_truncate_keeps_the_books_that_are_not_lendable(
        self, dbs: Databases, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Beside other books only the scenario's are replaced (DELETE, not TRUNCATE)."""
        monkeypatch.setenv("BOOKS_DATABASE_URL", dbs.books)
        assert seed_main(["--books", "5"]) == 0
        seed(dbs, random_seed=1)
        seed(dbs, random_seed=2, truncate=True)
        assert rows(dbs.books, "SELECT count(*), count(copies_total) FROM books") == [
            (5 + MINIMAL.books, MINIMAL.books)
        ]
        assert rows(dbs.books, "SELECT active_books FROM catalog_counters") == rows(
            dbs.books, "SELECT count(*) FROM books WHERE active"
        )
        assert rows(dbs.orders, "SELECT count(*) FROM borrows") == [(MINIMAL.borrows,)]

    def test_force_adds_beside_the_existing_data(self, dbs: Databases) -> None:
        seed(dbs, random_seed=1)
        seed(dbs, random_seed=2, force=True)
        assert rows(dbs.orders, "SELECT count(*) FROM members") == [(2 * MINIMAL.members,)]
        assert_consistent(dbs)


class TestBulkLoad:
    def test_indexes_and_keys_rebuilt_after_the_load_are_the_same(self, dbs: Databases) -> None:
        """Past 10,000 rows the borrows' indexes and foreign key are dropped and created
        again, exactly."""
        query = (
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = 'borrows'::regclass UNION ALL"
            " SELECT conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated"
            " FROM pg_constraint WHERE conrelid = 'borrows'::regclass ORDER BY 1"
        )
        before = rows(dbs.orders, query)
        scenario = Scenario(
            "small", books=1_500, members=800, borrows=12_000, waiting_holds=20, days=730
        )
        assert seed(dbs, scenario, random_seed=7)["borrows"] == 12_000
        assert rows(dbs.orders, query) == before
        assert_consistent(dbs)

    def test_history_keeps_the_shape_of_a_library(self, dbs: Databases) -> None:
        """Popular books lent most, ~12 % of the loans out overdue, loans in opening hours,
        no member ever above max_loans or with two copies of a book at once."""
        scenario = Scenario(
            "small", books=1_500, members=800, borrows=12_000, waiting_holds=20, days=730
        )
        seed(dbs, scenario, random_seed=8)
        [(top_share, overdue, outside_hours)] = rows(
            dbs.orders,
            "SELECT (SELECT sum(n) FROM (SELECT count(*) AS n FROM borrows WHERE status <> 'held'"
            "  GROUP BY book_id ORDER BY n DESC LIMIT 15) AS top)::float"
            "  / count(*) FILTER (WHERE status <> 'held'),"
            " (count(*) FILTER (WHERE status = 'active' AND due_at < now()))::float"
            "  / count(*) FILTER (WHERE status = 'active'),"
            " count(*) FILTER (WHERE status <> 'held'"
            "  AND extract(hour FROM requested_at AT TIME ZONE 'UTC') NOT BETWEEN 9 AND 19)"
            " FROM borrows",
        )
        assert top_share > 0.05  # the top 1 % of the books
        assert 0.05 < overdue < 0.2
        assert outside_hours == 0
        overlapping = rows(
            dbs.orders,
            "SELECT count(*) FROM borrows a JOIN borrows b ON a.member_id = b.member_id"
            " AND a.book_id = b.book_id AND a.id < b.id AND b.status <> 'held'"
            " AND b.requested_at < coalesce(a.returned_at, 'infinity')"
            " WHERE a.status <> 'held'",
        )
        assert overlapping == [(0,)]
        over_max = rows(
            dbs.orders,
            "SELECT count(*) FROM borrows b JOIN members m ON m.id = b.member_id"
            " WHERE b.status <> 'held' AND m.max_loans < ("
            "  SELECT count(*) FROM borrows o WHERE o.member_id = b.member_id"
            "  AND o.status <> 'held' AND o.requested_at <= b.requested_at"
            "  AND coalesce(o.returned_at, 'infinity') > b.requested_at)",
        )
        assert over_max == [(0,)]
        copies = dict(rows(dbs.books, "SELECT id, copies_total FROM books"))
        events = sorted(
            (moment, step, book_id)
            for book_id, borrowed, returned in rows(
                dbs.orders,
                "SELECT book_id, extract(epoch FROM borrowed_at),"
                " coalesce(extract(epoch FROM returned_at), 'infinity')"
                " FROM borrows WHERE status <> 'held'",
            )
            for moment, step in ((borrowed, 1), (returned, -1))
        )
        out: Counter[int] = Counter()
        for _, step, book_id in events:
            out[book_id] += step
            assert out[book_id] <= copies[book_id], book_id


class TestCommandLine:
    def test_scenario_prints_progress_and_totals(
        self, dbs: Databases, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("BOOKS_DATABASE_URL", dbs.books)
        monkeypatch.setenv("ORDERS_DATABASE_URL", dbs.orders)
        assert seed_main(["--scenario", "minimal", "--random-seed", "1"]) == 0
        out, err = capsys.readouterr()
        assert "seeding scenario minimal" in err
        assert "rows/s)" in err
        assert f"{MINIMAL.borrows} borrows" in out

    def test_non_empty_tables_are_a_one_line_error(
        self, dbs: Databases, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("BOOKS_DATABASE_URL", dbs.books)
        monkeypatch.setenv("ORDERS_DATABASE_URL", dbs.orders)
        seed(dbs, random_seed=1)
        assert seed_main(["--scenario", "minimal"]) == 1
        assert "error: the lending tables already hold data" in capsys.readouterr().err

    def test_without_scenario_loads_demo_books(
        self, dbs: Databases, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BOOKS_DATABASE_URL", dbs.books)
        assert seed_main(["--books", "25"]) == 0
        assert rows(dbs.books, "SELECT count(*), count(copies_total) FROM books") == [(25, 0)]
