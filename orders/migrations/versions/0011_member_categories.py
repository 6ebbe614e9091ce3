"""member categories: a member's total loan limit and block thresholds, admin-managed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

A member's `max_loans` becomes a personal override (null: their category's limit). The
members already there keep the limit they had as their override; PATCH it to null to
let the category decide. `adult` takes its limit from ORDERS_DEFAULT_MAX_LOANS.
"""

from alembic import op
from sqlalchemy import text

from orders.config import get_settings

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE member_categories (
            code text PRIMARY KEY CONSTRAINT member_categories_code_format
                CHECK (code ~ '^[a-z][a-z0-9_-]{0,31}$'),
            name text NOT NULL CONSTRAINT member_categories_name_not_blank
                CHECK (btrim(name) <> ''),
            max_loans integer NOT NULL CONSTRAINT member_categories_max_loans_range
                CHECK (max_loans BETWEEN 0 AND 1000),
            max_balance numeric(10, 2) NOT NULL CONSTRAINT member_categories_max_balance_range
                CHECK (max_balance >= 0),
            max_overdue_loans integer NOT NULL CONSTRAINT member_categories_max_overdue_range
                CHECK (max_overdue_loans BETWEEN 0 AND 1000),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.get_bind().execute(
        text(
            """
            INSERT INTO member_categories (code, name, max_loans, max_balance, max_overdue_loans)
            VALUES ('adult', 'Adult', :adult, 10.00, 2),
                   ('child', 'Child', 3, 5.00, 1),
                   ('staff', 'Staff', 20, 50.00, 5)
            """
        ),
        {"adult": get_settings().default_max_loans},
    )
    op.execute("ALTER TABLE members ALTER COLUMN max_loans DROP NOT NULL")
    # A constant default adds the column without rewriting the table; VALIDATE checks the
    # rows already there without blocking writes.
    op.execute("ALTER TABLE members ADD COLUMN category text NOT NULL DEFAULT 'adult'")
    op.execute(
        "ALTER TABLE members ADD CONSTRAINT members_category_fkey FOREIGN KEY (category)"
        " REFERENCES member_categories (code) NOT VALID"
    )
    op.execute("ALTER TABLE members VALIDATE CONSTRAINT members_category_fkey")
    # Serves the foreign key's check when a category is deleted.
    op.execute("CREATE INDEX members_category_idx ON members (category)")


def downgrade() -> None:
    op.execute("ALTER TABLE members DROP COLUMN category")
    op.get_bind().execute(
        text("UPDATE members SET max_loans = :limit WHERE max_loans IS NULL"),
        {"limit": get_settings().default_max_loans},
    )
    op.execute("ALTER TABLE members ALTER COLUMN max_loans SET NOT NULL")
    op.execute("DROP TABLE member_categories")
