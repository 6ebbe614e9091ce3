"""The production migrations: up from empty, down to nothing, up again; constraints enforced."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from alembic import command

from devstack.pytest_plugin import alembic_config, create_database, drop_database


@pytest.fixture
def empty_database(postgres_server_url: str) -> Iterator[str]:
    url = create_database(postgres_server_url, "books_migrations")
    yield url
    drop_database(postgres_server_url, url)


TABLES = {"books", "catalog_counters", "stock_reservations", "stock_movements", "outbox"}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows} - {"alembic_version"}


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
        command.downgrade(config, "base")
        assert tables(empty_database) == set()
        command.upgrade(config, "head")
        assert tables(empty_database) == TABLES

    @pytest.mark.parametrize(
        ("column", "value", "constraint"),
        [
            ("title", "'  '", "books_title_not_blank"),
            ("price", "-1", "books_price_not_negative"),
            ("image", "'[1]'::jsonb", "books_image_is_object"),
            ("stock", "-1", "books_stock_not_negative"),
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
