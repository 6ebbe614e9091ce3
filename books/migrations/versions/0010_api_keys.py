"""api_keys: the keys the public API accepts for writes (see servicekit.api_keys)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

Orders has the same table (its 0009); `python -m servicekit.api_keys` writes a key to both.
"""

from alembic import op

from servicekit.api_keys import CREATE_TABLE

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(CREATE_TABLE)


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
