"""orders and borrows remember how often the reconciler re-drove their saga

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

A pending order (or borrow) waits for a worker's job; when that job is lost or gives up,
the reconciler (`orders.reconcile`) announces the row again, each time waiting twice as
long as before, and settles it for good after a number of attempts. `redrives` and
`redriven_at` are what it goes by. Pending orders are found through
`orders_status_newest_idx`; pending borrows get a partial index of their own.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("orders", "borrows"):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN redrives smallint NOT NULL DEFAULT 0,"
            " ADD COLUMN redriven_at timestamptz NULL"
        )
    op.execute(
        "CREATE INDEX borrows_pending_idx ON borrows (requested_at, id) WHERE status = 'pending'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX borrows_pending_idx")
    for table in ("orders", "borrows"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN redrives, DROP COLUMN redriven_at")
