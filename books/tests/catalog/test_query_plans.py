"""The list queries can use the indexes built for them (a regression here is a table scan)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from books.catalog.reads import Statement, count_statement, page_statement
from books.catalog.schemas import BookListQuery
from servicekit.pagination import encode_cursor


@pytest.fixture
def catalog(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Enough rows, vacuumed and analyzed, for the planner to weigh the indexes as in
    production."""
    db.execute(
        "INSERT INTO books (title, author, description, price)"
        " SELECT 'Book ' || n, 'Author ' || (n % 500), 'D', n % 100 FROM generate_series(1, 5000) n"
    )
    db.execute("VACUUM (ANALYZE) books")
    return db


def plan(db: psycopg.Connection[Any], statement: Statement) -> str:
    query, params = statement
    with db.transaction():
        # Small test tables make a scan cheap; the question is whether an index fits.
        db.execute("SET LOCAL enable_seqscan = off")
        rows = db.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_author_total_uses_its_index(catalog: psycopg.Connection[Any]) -> None:
    statement = count_statement(BookListQuery(author="Author 7"))
    assert "books_active_author_idx" in plan(catalog, statement)


def test_first_page_reads_the_index_in_order(catalog: psycopg.Connection[Any]) -> None:
    assert "Index Only Scan using books_active_newest_idx" in plan(
        catalog, page_statement(BookListQuery())
    )


def test_a_deep_page_skips_rows_in_the_index_alone(catalog: psycopg.Connection[Any]) -> None:
    text = plan(catalog, page_statement(BookListQuery(offset=4000)))
    assert "Index Only Scan using books_active_newest_idx" in text
    # Only the page itself is read from the table, by primary key.
    assert "books_pkey" in text


def test_a_cursor_page_starts_at_its_position_in_the_index(
    catalog: psycopg.Connection[Any],
) -> None:
    """No rows skipped: the page is an index range from the cursor on, at any depth."""
    row = catalog.execute(
        "SELECT created_at, id FROM books ORDER BY created_at DESC, id DESC OFFSET 4000 LIMIT 1"
    ).fetchone()
    assert row is not None
    query = BookListQuery(after=encode_cursor(row[0], row[1]), limit=20)
    text = plan(catalog, page_statement(query))
    assert "Index Scan using books_active_newest_idx" in text
    assert "Index Cond: (ROW(created_at, id) < ROW(" in text
