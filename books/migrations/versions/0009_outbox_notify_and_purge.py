"""outbox: a NOTIFY wakes the relay when rows are committed; delivered rows can be purged

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

The relay (servicekit.relay) LISTENs on a channel named like the table and polls only as a
fallback; a statement-level trigger notifies once per inserting statement, and PostgreSQL
delivers the notification when the transaction commits (never for one rolled back). The
relay deletes rows delivered longer ago than its retention, oldest first, in bounded
batches: the index on delivered_at makes each batch a short range scan.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(TG_TABLE_NAME, '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox"
        " FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )
    op.execute(
        "CREATE INDEX outbox_delivered_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX outbox_delivered_idx")
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION outbox_notify()")
