"""closed days: the library's calendar; a due date that falls on one moves to the next
open day

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

Days are UTC dates. `next_open_day` is the one place the rule lives: the statements that
set a due date (activation, checkout, renewal) wrap it around the date they compute.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE closed_days (
            day date PRIMARY KEY,
            reason text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # The same time of day on the first UTC date from `due` on that is not closed (a year
    # of closed days in a row at most).
    op.execute(
        """
        CREATE FUNCTION next_open_day(due timestamptz) RETURNS timestamptz
        LANGUAGE sql STABLE AS $$
            SELECT due + make_interval(days => (
                SELECT min(n) FROM generate_series(0, 366) AS n
                WHERE NOT EXISTS (
                    SELECT 1 FROM closed_days c
                    WHERE c.day = (due AT TIME ZONE 'UTC')::date + n
                )
            ))
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION next_open_day(timestamptz)")
    op.execute("DROP TABLE closed_days")
