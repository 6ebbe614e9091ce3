"""item types: what kind of thing a book is (`book`, `reference`, …), admin-managed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

Orders matches its lending policies on a book's `format` (its item type).
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE item_types (
            code text PRIMARY KEY
                CONSTRAINT item_types_code_format CHECK (code ~ '^[a-z][a-z0-9_-]{0,31}$'),
            name text NOT NULL CONSTRAINT item_types_name_not_blank CHECK (btrim(name) <> ''),
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        INSERT INTO item_types (code, name) VALUES
            ('book', 'Book'),
            ('reference', 'Reference work'),
            ('audiobook', 'Audiobook'),
            ('magazine', 'Magazine')
        """
    )
    # A constant default adds the column without rewriting the table; the foreign key is
    # checked for the rows already there by VALIDATE, which does not block writes.
    op.execute("ALTER TABLE books ADD COLUMN format text NOT NULL DEFAULT 'book'")
    op.execute(
        "ALTER TABLE books ADD CONSTRAINT books_format_fkey FOREIGN KEY (format)"
        " REFERENCES item_types (code) NOT VALID"
    )
    op.execute("ALTER TABLE books VALIDATE CONSTRAINT books_format_fkey")
    # The foreign key's own check when an item type is deleted.
    op.execute("CREATE INDEX books_format_idx ON books (format)")


def downgrade() -> None:
    op.execute("ALTER TABLE books DROP COLUMN format")
    op.execute("DROP TABLE item_types")
