"""outbox rows carry the W3C traceparent of the request that wrote them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Null when tracing is off (or for rows written before this revision); the relay then
starts the job's trace afresh, as before.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN traceparent text NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN traceparent")
