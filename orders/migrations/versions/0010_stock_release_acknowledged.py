"""orders remember a stock release that no worker has reported done yet

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

A cancelled order, or one the reconciler gave up, announces that its stock goes back; the
job that gives it back reports when books has done it. `releasing_since` is set in the
transaction that announces the release and cleared by that report, so an order whose
release job failed for good is found, through the partial index, and announced again by
the reconciler (`orders.saga`), whose re-drive counters start again at 0.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders ADD COLUMN releasing_since timestamptz NULL")
    op.execute(
        "CREATE INDEX orders_releasing_idx ON orders (releasing_since, id)"
        " WHERE releasing_since IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX orders_releasing_idx")
    op.execute("ALTER TABLE orders DROP COLUMN releasing_since")
