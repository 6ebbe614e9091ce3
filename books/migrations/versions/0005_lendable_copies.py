"""lendable copies on books, apart from the stock that is sold, and their loan ledger

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

`copies_total - copies_available` is the number of `copy_loans` rows in state `out` for
the book: every write of the internal copies API moves both in one transaction.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both NULL: the book is not lendable. Nullable columns without a default are added
    # without rewriting the table. The NULL tests are spelled out because a comparison with
    # a NULL side is NULL, which a CHECK lets through.
    op.execute(
        """
        ALTER TABLE books
            ADD COLUMN copies_total integer NULL,
            ADD COLUMN copies_available integer NULL,
            ADD CONSTRAINT books_copies_within_total CHECK (
                (copies_total IS NULL AND copies_available IS NULL)
                OR (
                    copies_total IS NOT NULL
                    AND copies_available IS NOT NULL
                    AND copies_available >= 0
                    AND copies_available <= copies_total
                )
            )
        """
    )
    # Serves `GET /v1/books?available=true` in the list order, as books_active_newest_idx
    # serves the unfiltered list; the query must write the same `copies_available > 0`.
    op.execute(
        "CREATE INDEX books_available_newest_idx ON books (created_at DESC, id DESC)"
        " WHERE active AND copies_available > 0"
    )
    # One row per reference: claiming it first is what makes a repeated call a replay.
    op.execute(
        """
        CREATE TABLE copy_loans (
            reference text PRIMARY KEY CONSTRAINT copy_loans_reference_format
                CHECK (reference ~ '^(borrow|hold):[0-9]{1,19}$'),
            book_id bigint NOT NULL REFERENCES books (id),
            state text NOT NULL CONSTRAINT copy_loans_state_known
                CHECK (state IN ('out', 'in', 'passed')),
            passed_to text NULL REFERENCES copy_loans (reference),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT copy_loans_passed_to_iff_passed
                CHECK ((state = 'passed') = (passed_to IS NOT NULL))
        )
        """
    )
    op.execute("CREATE INDEX copy_loans_out_book_id_idx ON copy_loans (book_id) WHERE state = 'out'")


def downgrade() -> None:
    op.execute("DROP TABLE copy_loans")
    op.execute("DROP INDEX books_available_newest_idx")
    op.execute(
        "ALTER TABLE books DROP CONSTRAINT books_copies_within_total,"
        " DROP COLUMN copies_available, DROP COLUMN copies_total"
    )
