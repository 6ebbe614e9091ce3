"""lending: a covering index of the loans lent since a date (popular books, top members)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

The library's rankings count the loans of a window by book or by member. Without it they
read every borrow of the window from the heap (and, for the titles, sorted them all): at
4M borrows, a ten-year window took 12 s. Covering book and member ids, the count is an
index-only scan of the window's entries.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX borrows_lent_since_idx ON borrows (requested_at) INCLUDE (book_id, member_id)
        WHERE status IN ('active', 'returned')
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX borrows_lent_since_idx")
