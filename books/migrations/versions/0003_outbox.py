"""outbox for side effects of catalog changes (cover images to delete)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Same shape as every service's outbox (servicekit.outbox / servicekit.relay).
    op.execute(
        """
        CREATE TABLE outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            topic text NOT NULL CONSTRAINT outbox_topic_not_blank CHECK (btrim(topic) <> ''),
            payload jsonb NOT NULL,
            request_id text NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz NULL
        )
        """
    )
    op.execute("CREATE INDEX outbox_undelivered_idx ON outbox (id) WHERE delivered_at IS NULL")


def downgrade() -> None:
    op.execute("DROP TABLE outbox")
