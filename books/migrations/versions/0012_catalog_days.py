"""catalog days: active books per UTC day of `created_at`, for deep pages

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

The list is newest first, so the books before a given UTC day are exactly those of the
later days: with a count per day, a page at offset 500,000 starts walking the list index
at the right day instead of skipping 500,000 entries (`books.catalog.reads`). The count
triggers of 0001 keep these counts in the same statements that move the catalog counter,
so both are as exact as the rows they count, in every snapshot.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Each day's change of active books, from a statement's transition tables:
# growing days are upserted, shrinking ones (which exist, holding what they lose)
# updated, both in day order, so that two statements lock shared days in the same order.
MOVE_DAYS = """
    WITH moved AS (
        SELECT day, sum(change) AS change FROM ({changes}) AS changes
        GROUP BY day HAVING sum(change) <> 0
    ), grown AS (
        INSERT INTO catalog_days AS d (day, active_books)
        SELECT day, change FROM moved WHERE change > 0 ORDER BY day
        ON CONFLICT (day) DO UPDATE SET active_books = d.active_books + EXCLUDED.active_books
    )
    UPDATE catalog_days AS d SET active_books = d.active_books + moved.change
    FROM moved WHERE moved.change < 0 AND d.day = moved.day;
"""
DAY = "(created_at AT TIME ZONE 'UTC')::date"


def _changes(*tables: tuple[str, int]) -> str:
    return " UNION ALL ".join(
        f"SELECT {DAY} AS day, {sign} AS change FROM {table} WHERE active"
        for table, sign in tables
    )


def count_functions(*, days: bool) -> str:
    """The count triggers' functions of 0001, moving the day counts too when `days`."""

    def move(*tables: tuple[str, int]) -> str:
        return MOVE_DAYS.format(changes=_changes(*tables)) if days else ""

    def moved_rows_only(statement: str) -> str:
        """Most updates (stock, copies, prices) move no book to another day or out of the
        list: one cheap look at the changed rows spares them the days' statement."""
        if not statement:
            return ""
        return f"""IF EXISTS (SELECT 1 FROM new_rows AS n JOIN old_rows AS o USING (id)
                WHERE (n.active, n.created_at) IS DISTINCT FROM (o.active, o.created_at)) THEN
                {statement}
            END IF;"""

    return f"""
        CREATE OR REPLACE FUNCTION catalog_count_inserted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE delta bigint;
        BEGIN
            SELECT count(*) INTO delta FROM inserted_rows WHERE active;
            IF delta <> 0 THEN
                UPDATE catalog_counters SET active_books = active_books + delta WHERE id = 1;
                {move(("inserted_rows", 1))}
            END IF;
            RETURN NULL;
        END $$;

        CREATE OR REPLACE FUNCTION catalog_count_updated() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE delta bigint;
        BEGIN
            SELECT (SELECT count(*) FROM new_rows WHERE active)
                 - (SELECT count(*) FROM old_rows WHERE active) INTO delta;
            IF delta <> 0 THEN
                UPDATE catalog_counters SET active_books = active_books + delta WHERE id = 1;
            END IF;
            {moved_rows_only(move(("new_rows", 1), ("old_rows", -1)))}
            RETURN NULL;
        END $$;

        CREATE OR REPLACE FUNCTION catalog_count_deleted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE delta bigint;
        BEGIN
            SELECT count(*) INTO delta FROM deleted_rows WHERE active;
            IF delta <> 0 THEN
                UPDATE catalog_counters SET active_books = active_books - delta WHERE id = 1;
                {move(("deleted_rows", -1))}
            END IF;
            RETURN NULL;
        END $$;
    """


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE catalog_days (
            day date PRIMARY KEY,
            active_books bigint NOT NULL CONSTRAINT catalog_days_not_negative
                CHECK (active_books >= 0)
        );

        -- Every day counted afresh: the backfill here, and `make seed` after a bulk load
        -- that paused the insert trigger.
        CREATE FUNCTION catalog_days_recount() RETURNS void LANGUAGE sql AS $$
            DELETE FROM catalog_days;
            INSERT INTO catalog_days (day, active_books)
            SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM books WHERE active
            GROUP BY 1;
        $$;
        SELECT catalog_days_recount();
        """
    )
    op.execute(count_functions(days=True))


def downgrade() -> None:
    op.execute(count_functions(days=False))
    op.execute("DROP FUNCTION catalog_days_recount; DROP TABLE catalog_days")
