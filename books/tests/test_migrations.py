"""The production migrations: up from empty, down to nothing, up again; constraints enforced."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from alembic import command

from devstack.pytest_plugin import alembic_config, create_database, drop_database


@pytest.fixture
def empty_database(postgres_server_url: str) -> Iterator[str]:
    url = create_database(postgres_server_url, "books_migrations")
    yield url
    drop_database(postgres_server_url, url)


TABLES = {
    "books",
    "catalog_counters",
    "catalog_days",
    "stock_reservations",
    "stock_movements",
    "outbox",
    "copy_loans",
    "api_keys",
    "item_types",
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows} - {"alembic_version"}


def book_columns(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'books'"
        ).fetchall()
    return {row[0] for row in rows}


def autovacuum_options(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'books'").fetchone()
    return list(row[0] or []) if row else []


class TestMigrations:
    def test_upgrade_downgrade_upgrade(self, empty_database: str) -> None:
        config = alembic_config("books", empty_database)
        command.upgrade(config, "head")
        assert tables(empty_database) == TABLES
        assert autovacuum_options(empty_database) == [
            "autovacuum_vacuum_scale_factor=0.02",
            "autovacuum_vacuum_insert_scale_factor=0.02",
        ]
        command.downgrade(config, "0004")
        assert tables(empty_database) == TABLES - {
            "copy_loans",
            "api_keys",
            "item_types",
            "catalog_days",
        }
        assert not {"copies_total", "copies_available"} & book_columns(empty_database)
        command.downgrade(config, "base")
        assert tables(empty_database) == set()
        command.upgrade(config, "head")
        assert tables(empty_database) == TABLES

    def test_names_written_before_0006_are_collapsed(self, empty_database: str) -> None:
        config = alembic_config("books", empty_database)
        command.upgrade(config, "0005")
        with psycopg.connect(empty_database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO books (title, author, description, price)"
                " VALUES (%s, %s, %s, 1), ('Tidy', 'Author', 'D', 1)",
                ("  The   Great\tGatsby ", "F.  Scott\nFitzgerald", " Line one\nline two "),
            )
        command.upgrade(config, "head")
        with psycopg.connect(empty_database) as conn:
            rows = conn.execute(
                "SELECT title, author, description FROM books ORDER BY id"
            ).fetchall()
        assert rows == [
            ("The Great Gatsby", "F. Scott Fitzgerald", " Line one\nline two "),
            ("Tidy", "Author", "D"),
        ]

    @pytest.mark.parametrize(
        ("column", "value", "constraint"),
        [
            ("title", "'  '", "books_title_not_blank"),
            ("price", "-1", "books_price_not_negative"),
            ("image", "'[1]'::jsonb", "books_image_is_object"),
            ("stock", "-1", "books_stock_not_negative"),
            ("copies_total", "3", "books_copies_within_total"),
            ("copies_available", "3", "books_copies_within_total"),
        ],
    )
    def test_database_enforces_the_rules(
        self, books_database_url: str, column: str, value: str, constraint: str
    ) -> None:
        values = {"title": "'T'", "author": "'A'", "description": "'D'", "price": "1"}
        values[column] = value
        statement = f"INSERT INTO books ({', '.join(values)}) VALUES ({', '.join(values.values())})"
        with (
            psycopg.connect(books_database_url) as conn,
            pytest.raises(psycopg.errors.CheckViolation, match=constraint),
        ):
            conn.execute(statement)

    @pytest.mark.parametrize(
        ("total", "available"), [(3, 4), (3, -1), (-1, -1), (None, 0), (0, None)]
    )
    def test_database_keeps_available_copies_within_the_total(
        self, books_database_url: str, total: int | None, available: int | None
    ) -> None:
        with (
            psycopg.connect(books_database_url) as conn,
            pytest.raises(psycopg.errors.CheckViolation, match="books_copies_within_total"),
        ):
            conn.execute(
                "INSERT INTO books (title, author, description, price, copies_total,"
                " copies_available) VALUES ('T', 'A', 'D', 1, %s, %s)",
                (total, available),
            )

    @pytest.mark.parametrize(
        ("reference", "state", "passed_to", "constraint"),
        [
            ("order:1", "out", None, "copy_loans_reference_format"),
            ("borrow:1", "lost", None, "copy_loans_state_known"),
            ("borrow:1", "passed", None, "copy_loans_passed_to_iff_passed"),
            ("borrow:1", "out", "borrow:1", "copy_loans_passed_to_iff_passed"),
        ],
    )
    def test_database_enforces_the_ledger_rules(
        self,
        books_database_url: str,
        reference: str,
        state: str,
        passed_to: str | None,
        constraint: str,
    ) -> None:
        with psycopg.connect(books_database_url) as conn:
            row = conn.execute(
                "INSERT INTO books (title, author, description, price, copies_total,"
                " copies_available) VALUES ('T', 'A', 'D', 1, 1, 0) RETURNING id"
            ).fetchone()
            assert row is not None
            with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
                conn.execute(
                    "INSERT INTO copy_loans (reference, book_id, state, passed_to)"
                    " VALUES (%s, %s, %s, %s)",
                    (reference, row[0], state, passed_to),
                )

    def test_counter_follows_bulk_statements(self, books_database_url: str) -> None:
        with psycopg.connect(books_database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO books (title, author, description, price)"
                " SELECT 'T' || n, 'A', 'D', n FROM generate_series(1, 50) AS n"
            )
            conn.execute("UPDATE books SET active = false WHERE price <= 10")
            conn.execute("DELETE FROM books WHERE price > 40")
            counted = conn.execute("SELECT count(*) FROM books WHERE active").fetchone()
            counter = conn.execute("SELECT active_books FROM catalog_counters").fetchone()
        assert counted == counter == (30,)

    def test_day_counts_follow_statements_and_racing_writers(self, books_database_url: str) -> None:
        """The active books of each UTC day (migration 0012) after bulk statements, and
        after writers that add books to the same new days at once (they upsert the days'
        rows: none may fail or be lost)."""
        with psycopg.connect(books_database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO books (title, author, description, price, created_at)"
                " SELECT 'T' || n, 'A', 'D', n, timestamptz '2030-03-01 00:30Z'"
                " - (n % 5) * interval '1 hour' FROM generate_series(1, 60) AS n"
            )
            conn.execute("UPDATE books SET active = false WHERE price <= 10")
            conn.execute(
                "UPDATE books SET created_at = created_at + interval '2 days' WHERE price > 50"
            )
            conn.execute("DELETE FROM books WHERE price BETWEEN 20 AND 25")

        def add_books(writer: int) -> None:
            with psycopg.connect(books_database_url, autocommit=True) as conn:
                for n in range(20):
                    conn.execute(
                        "INSERT INTO books (title, author, description, price, created_at)"
                        " VALUES ('W', 'A', 'D', 1, timestamptz '2031-01-01Z' + %s * interval"
                        " '1 day')",
                        (n % 3,),
                    )

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(add_books, range(4)))
        with psycopg.connect(books_database_url) as conn:
            counted = conn.execute(
                "SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM books"
                " WHERE active GROUP BY 1 ORDER BY 1"
            ).fetchall()
            kept = conn.execute(
                "SELECT day, active_books FROM catalog_days WHERE active_books > 0 ORDER BY 1"
            ).fetchall()
        assert kept == counted
