"""holds completed: suspended holds (with an automatic resume date), a queue rank staff can
reorder, a per-policy cap on open holds, and pickup windows counted in open days

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

A suspended hold stays in its book's queue (its rank is kept) but is passed over when a
copy is handed over. `queue_rank` orders each book's queue: new holds take the next value
of their sequence, so they go last; a staff reorder permutes the ranks a book's queue
already has, so every later hold still goes after it. Existing holds get their id as
rank: the order they had (first come, first served).
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE lending_policies ADD COLUMN max_holds integer"
        " CONSTRAINT lending_policies_max_holds CHECK (max_holds BETWEEN 0 AND 1000)"
    )
    op.execute("ALTER TABLE holds DROP CONSTRAINT holds_status_known")
    op.execute(
        """
        ALTER TABLE holds ADD CONSTRAINT holds_status_known CHECK (
            status IN ('waiting', 'suspended', 'ready', 'fulfilled', 'cancelled', 'expired')
        )
        """
    )
    op.execute(
        """
        ALTER TABLE holds ADD COLUMN suspended_until date,
            ADD CONSTRAINT holds_resume_date_when_suspended
                CHECK (status = 'suspended' OR suspended_until IS NULL)
        """
    )
    op.execute("ALTER TABLE holds ADD COLUMN queue_rank bigint")
    op.execute("CREATE SEQUENCE holds_queue_rank_seq OWNED BY holds.queue_rank")
    op.execute("UPDATE holds SET queue_rank = id")
    op.execute(
        "SELECT setval('holds_queue_rank_seq', coalesce(max(id), 0) + 1, false) FROM holds"
    )
    op.execute(
        "ALTER TABLE holds ALTER COLUMN queue_rank SET DEFAULT nextval('holds_queue_rank_seq'),"
        " ALTER COLUMN queue_rank SET NOT NULL"
    )
    # One open hold per member and book: a suspended one is still open.
    op.execute("DROP INDEX holds_one_per_member_book")
    op.execute(
        "CREATE UNIQUE INDEX holds_one_per_member_book ON holds (member_id, book_id)"
        " WHERE status IN ('waiting', 'suspended', 'ready')"
    )
    # Each book's queue, in rank order: hand-over, positions and reorders walk it.
    op.execute("DROP INDEX holds_queue_idx")
    op.execute(
        "CREATE INDEX holds_queue_idx ON holds (book_id, queue_rank)"
        " WHERE status IN ('waiting', 'suspended')"
    )
    # The sweep's automatic resumes, soonest first.
    op.execute(
        "CREATE INDEX holds_resume_idx ON holds (suspended_until, id)"
        " WHERE status = 'suspended' AND suspended_until IS NOT NULL"
    )
    # `start` moved `days` open days on, at the same time of day: the day it lands on is
    # the `days`-th UTC date after `start`'s that is not closed (a year of closed days
    # beyond the window at most). A ready hold's pickup window is counted with it.
    op.execute(
        """
        CREATE FUNCTION add_open_days(start timestamptz, days integer) RETURNS timestamptz
        LANGUAGE sql STABLE AS $$
            SELECT start + make_interval(days => (
                SELECT n FROM generate_series(1, days + 366) AS n
                WHERE NOT EXISTS (
                    SELECT 1 FROM closed_days c
                    WHERE c.day = (start AT TIME ZONE 'UTC')::date + n
                )
                ORDER BY n
                OFFSET days - 1
                LIMIT 1
            ))
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION add_open_days(timestamptz, integer)")
    op.execute("DROP INDEX holds_resume_idx")
    op.execute("DROP INDEX holds_queue_idx")
    op.execute("UPDATE holds SET status = 'waiting', suspended_until = NULL WHERE status = 'suspended'")
    op.execute("CREATE INDEX holds_queue_idx ON holds (book_id, id) WHERE status = 'waiting'")
    op.execute("DROP INDEX holds_one_per_member_book")
    op.execute(
        "CREATE UNIQUE INDEX holds_one_per_member_book ON holds (member_id, book_id)"
        " WHERE status IN ('waiting', 'ready')"
    )
    op.execute("ALTER TABLE holds DROP COLUMN queue_rank")
    op.execute("ALTER TABLE holds DROP COLUMN suspended_until")
    op.execute("ALTER TABLE holds DROP CONSTRAINT holds_status_known")
    op.execute(
        """
        ALTER TABLE holds ADD CONSTRAINT holds_status_known
            CHECK (status IN ('waiting', 'ready', 'fulfilled', 'cancelled', 'expired'))
        """
    )
    op.execute("ALTER TABLE lending_policies DROP COLUMN max_holds")
