"""orders: rejection reason, present exactly when the order is rejected

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE orders
            ADD COLUMN rejection_reason text NULL,
            ADD CONSTRAINT orders_rejection_reason_iff_rejected CHECK (
                (status = 'rejected') = (rejection_reason IS NOT NULL AND btrim(rejection_reason) <> '')
            )
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE orders DROP COLUMN rejection_reason")
