"""The catalog's hot reads, in SQL on the read pool (see `servicekit.database.ReadPool`):
a book by id, and a page of books with its total in one statement."""

from __future__ import annotations

from psycopg import sql

from books.catalog.schemas import BookListQuery
from servicekit.database import ReadPool, Row

Statement = tuple[sql.Composed | sql.SQL, list[object]]

COLUMNS = sql.SQL(
    "id, title, author, description, price, active, image, stock, copies_total,"
    " copies_available, format, created_at, updated_at"
)
BOOK_BY_ID = sql.SQL("SELECT {} FROM books WHERE id = %s AND active").format(COLUMNS)
NEWEST_FIRST = sql.SQL("ORDER BY created_at DESC, id DESC")
# The unfiltered total: a one-row counter kept by triggers (migration 0001), not a scan.
ACTIVE_BOOKS = sql.SQL("SELECT active_books FROM catalog_counters WHERE id = 1")


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


def filters(query: BookListQuery) -> Statement:
    """The WHERE condition of a list query and its parameters."""
    # The bare column, as the partial indexes' `WHERE active` is written: `active IS true`
    # would not match them and turn page reads into table scans.
    conditions: list[sql.Composable] = [sql.SQL("active")]
    params: list[object] = []
    if query.author is not None:
        conditions.append(sql.SQL("lower(author) = %s"))
        params.append(query.author.lower())
    if query.q is not None:
        conditions.append(sql.SQL("(title ILIKE %s OR author ILIKE %s)"))
        pattern = f"%{_escape_like(query.q)}%"
        params += [pattern, pattern]
    if query.min_price is not None:
        conditions.append(sql.SQL("price >= %s"))
        params.append(query.min_price)
    if query.max_price is not None:
        conditions.append(sql.SQL("price <= %s"))
        params.append(query.max_price)
    if (ids := query.id_list) is not None:
        conditions.append(sql.SQL("id = ANY(%s)"))
        params.append(ids)
    if query.format is not None:
        conditions.append(sql.SQL("format = %s"))
        params.append(query.format)
    # A literal 0, not a parameter, so that the planner can match the predicate of
    # books_available_newest_idx (`copies_available > 0`) whatever plan it caches.
    if query.available is True:
        conditions.append(sql.SQL("copies_available > 0"))
    elif query.available is False:
        conditions.append(sql.SQL("copies_available = 0"))
    return sql.SQL(" AND ").join(conditions), params


# From this offset on, an unfiltered page starts at its day (`_page_ids_from_its_day`):
# nearer the top, skipping the books themselves costs less than summing the days.
DAY_SKIP_FROM_OFFSET = 10_000
# The UTC day that holds the book at offset %s of the unfiltered list, and how many active
# books the later days hold: a running sum over the day counts kept by triggers (0012).
# (A day holds far fewer than 2**31 books: the running sum adds integers, not numerics.)
START_DAY = sql.SQL(
    "SELECT day, through - active_books AS before FROM (SELECT day, active_books,"
    " sum(active_books::integer) OVER (ORDER BY day DESC) AS through FROM catalog_days"
    " WHERE active_books > 0) AS days WHERE through > %s ORDER BY day DESC LIMIT 1"
)


def page_statement(query: BookListQuery) -> Statement:
    """One page of books, newest first: by offset, or by cursor when `after` is sent.

    The page's ids are found first and only then its rows: skipping `offset` rows walks
    the list index alone (an index-only scan while the table is vacuumed) instead of
    reading every skipped book from the table; see `make bench`'s deep-page rows.
    """
    if query.after is not None:
        return _keyset_page_statement(query)
    if not query.is_filtered and query.offset >= DAY_SKIP_FROM_OFFSET:
        ids, params = _page_ids_from_its_day(query)
    else:
        where, params = filters(query)
        ids = sql.SQL("SELECT id FROM books WHERE {where} {order} LIMIT %s OFFSET %s").format(
            where=where, order=NEWEST_FIRST
        )
        params += [query.limit, query.offset]
    statement = sql.SQL("SELECT {columns} FROM books JOIN ({ids}) AS page USING (id) {order}")
    return statement.format(columns=COLUMNS, ids=ids, order=NEWEST_FIRST), params


def _page_ids_from_its_day(query: BookListQuery) -> Statement:
    """The ids of a deep unfiltered page, the same as `OFFSET` finds them, without walking
    the books before its first one: the list is newest first, so the books of the days
    after the page's first day are exactly the ones before that day's first book; the day
    counts say which day that is and how many books come before it. The walk starts at
    the end of that day and skips less than one day's books. Past the end no day is
    found, and the page is empty."""
    statement = sql.SQL(
        "WITH start AS MATERIALIZED ({start}) SELECT id FROM books WHERE active AND created_at"
        " < (SELECT (day + 1)::timestamp AT TIME ZONE 'UTC' FROM start)"
        " {order} LIMIT %s OFFSET (SELECT %s - before FROM start)"
    ).format(start=START_DAY, order=NEWEST_FIRST)
    return statement, [query.offset, query.limit, query.offset]


def _keyset_page_statement(query: BookListQuery) -> Statement:
    """The page after the cursor's book, and one book more (whether a next page exists).
    The row comparison is a range on the list index: the page starts where the previous
    one ended, without walking the books before it, so it costs the same at any depth;
    and a book added meanwhile (newer, so before the cursor) does not shift it."""
    where, params = filters(query)
    if (position := query.position) is not None:
        where = sql.SQL("{} AND (created_at, id) < (%s, %s)").format(where)
        params += list(position)
    statement = sql.SQL("SELECT {columns} FROM books WHERE {where} {order} LIMIT %s").format(
        columns=COLUMNS, where=where, order=NEWEST_FIRST
    )
    return statement, [*params, query.limit + 1]


def count_statement(query: BookListQuery) -> Statement:
    """The total of a list query: the counter when unfiltered, else a count over the
    partial indexes, which grows with the matches, not with the catalog."""
    if not query.is_filtered:
        return ACTIVE_BOOKS, []
    where, params = filters(query)
    return sql.SQL("SELECT count(*) FROM books WHERE {}").format(where), params


def page_with_total_statement(query: BookListQuery) -> Statement:
    """The page with the total of its query as a `total` column on every row."""
    page, page_params = page_statement(query)
    count, count_params = count_statement(query)
    statement = sql.SQL("SELECT *, ({count}) AS total FROM ({page}) AS page {order}").format(
        count=count, page=page, order=NEWEST_FIRST
    )
    return statement, [*count_params, *page_params]


class BookReads:
    def __init__(self, pool: ReadPool) -> None:
        self.pool = pool

    async def active_book(self, *, book_id: int) -> Row | None:
        rows = await self.pool.rows(BOOK_BY_ID, (book_id,))
        return rows[0] if rows else None

    async def page(self, *, query: BookListQuery) -> tuple[list[Row], int]:
        """A page and the total of its query in one statement (the total is an uncorrelated
        subquery, computed once); only a page past the end costs the count apart."""
        return await self.pool.page(page_with_total_statement(query), count_statement(query))
