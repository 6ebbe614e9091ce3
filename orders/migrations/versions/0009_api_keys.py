"""api_keys, and idempotency keys scoped by the API key that sent them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

The keys the public API accepts (see servicekit.api_keys; books has the same table, its
0010). Two clients using the same Idempotency-Key must not get each other's order, so a
key is now unique per API key: the primary key becomes (api_key_id, key). The rows
already there belong to no API key; they are a day's retry window at most and are
dropped (a retry of such a request runs afresh).
"""

from alembic import op

from servicekit.api_keys import CREATE_TABLE

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(CREATE_TABLE)
    op.execute("DELETE FROM idempotency_keys")
    op.execute(
        """
        ALTER TABLE idempotency_keys
            ADD COLUMN api_key_id bigint NOT NULL REFERENCES api_keys (id),
            DROP CONSTRAINT idempotency_keys_pkey,
            ADD PRIMARY KEY (api_key_id, key)
        """
    )


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys")
    op.execute(
        """
        ALTER TABLE idempotency_keys
            DROP CONSTRAINT idempotency_keys_pkey,
            DROP COLUMN api_key_id,
            ADD PRIMARY KEY (key)
        """
    )
    op.execute("DROP TABLE api_keys")
