"""`?available=true` pages read their own partial index, like the unfiltered list."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from books.catalog.reads import count_statement, page_statement
from books.catalog.schemas import BookListQuery
from tests.catalog.test_query_plans import plan


@pytest.fixture
def catalog(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Mostly unlendable books, some lendable with or without a copy on the shelf."""
    db.execute(
        "INSERT INTO books (title, author, description, price, copies_total, copies_available)"
        " SELECT 'Book ' || n, 'Author ' || (n % 500), 'D', n % 100,"
        " CASE WHEN n % 10 = 0 THEN 2 END, CASE WHEN n % 10 = 0 THEN n % 3 END"
        " FROM generate_series(1, 5000) n"
    )
    db.execute("VACUUM (ANALYZE) books")
    return db


def test_available_pages_read_the_available_index(catalog: psycopg.Connection[Any]) -> None:
    text = plan(catalog, page_statement(BookListQuery(available=True, offset=100)))
    assert "Index Only Scan using books_available_newest_idx" in text


def test_available_total_reads_the_available_index(catalog: psycopg.Connection[Any]) -> None:
    statement = count_statement(BookListQuery(available=True))
    assert "books_available_newest_idx" in plan(catalog, statement)
