"""lost items: a loan overdue long enough becomes lost and is charged; returned, refunded

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

A policy sets after how many days overdue a loan is lost (`lost_after_days`, NULL:
never) and the processing fee charged with the book's price. A lost loan keeps its copy
out at books (nobody has it on the shelf) until it is returned; it no longer counts
against the member's loan limit. The ledger gains three kinds: the replacement charge
(`lost_item`, one per loan), the processing fee (`processing_fee`, one per loan) and the
refund of the replacement charge when the copy comes back (`refund`, one per loan).

A refund may leave the member in credit (a negative balance, as in Koha: the credit pays
their next charges). Payments and waivers still may not: the balance CHECK becomes a
check in the trigger, for those two kinds only.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE lending_policies
            ADD COLUMN lost_after_days integer NULL CONSTRAINT lending_policies_lost_after
                CHECK (lost_after_days BETWEEN 1 AND 3650),
            ADD COLUMN lost_processing_fee numeric(10, 2) NOT NULL DEFAULT 0
                CONSTRAINT lending_policies_lost_fee CHECK (lost_processing_fee >= 0)
        """
    )
    op.execute(
        """
        ALTER TABLE borrows
            ADD COLUMN lost_at timestamptz NULL,
            DROP CONSTRAINT borrows_status_known,
            ADD CONSTRAINT borrows_status_known
                CHECK (status IN ('pending', 'active', 'returned', 'held', 'rejected', 'lost')),
            DROP CONSTRAINT borrows_lent_has_dates,
            ADD CONSTRAINT borrows_lent_has_dates CHECK (
                (status IN ('active', 'returned', 'lost'))
                = (borrowed_at IS NOT NULL AND due_at IS NOT NULL)
            ),
            ADD CONSTRAINT borrows_lost_has_date CHECK (status <> 'lost' OR lost_at IS NOT NULL)
        """
    )
    op.execute(
        """
        ALTER TABLE ledger_entries
            DROP CONSTRAINT ledger_entries_kind_known,
            ADD CONSTRAINT ledger_entries_kind_known CHECK (
                kind IN ('fine', 'payment', 'waiver', 'lost_item', 'processing_fee', 'refund')
            ),
            DROP CONSTRAINT ledger_entries_sign_of_kind,
            ADD CONSTRAINT ledger_entries_sign_of_kind CHECK (
                (kind IN ('fine', 'lost_item', 'processing_fee')) = (amount > 0) AND amount <> 0
            ),
            DROP CONSTRAINT ledger_entries_fine_has_loan,
            ADD CONSTRAINT ledger_entries_loan_charge_has_loan CHECK (
                kind IN ('payment', 'waiver') OR borrow_id IS NOT NULL
            )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX ledger_entries_one_charge_of_kind_per_loan"
        " ON ledger_entries (borrow_id, kind)"
        " WHERE kind IN ('lost_item', 'processing_fee', 'refund')"
    )
    op.execute("ALTER TABLE members DROP CONSTRAINT members_balance_not_negative")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION ledger_entries_to_balance() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            after numeric;
        BEGIN
            UPDATE members SET balance = balance + NEW.amount WHERE id = NEW.member_id
                RETURNING balance INTO after;
            IF NEW.kind IN ('payment', 'waiver') AND after < 0 THEN
                RAISE EXCEPTION 'a % may not take member %''s balance below zero',
                    NEW.kind, NEW.member_id
                    USING ERRCODE = 'check_violation',
                          CONSTRAINT = 'members_balance_not_negative';
            END IF;
            RETURN NULL;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION ledger_entries_to_balance() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE members SET balance = balance + NEW.amount WHERE id = NEW.member_id;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "ALTER TABLE members ADD CONSTRAINT members_balance_not_negative CHECK (balance >= 0)"
    )
    op.execute("DROP INDEX ledger_entries_one_charge_of_kind_per_loan")
    op.execute(
        """
        ALTER TABLE ledger_entries
            DROP CONSTRAINT ledger_entries_loan_charge_has_loan,
            ADD CONSTRAINT ledger_entries_fine_has_loan
                CHECK (kind <> 'fine' OR borrow_id IS NOT NULL),
            DROP CONSTRAINT ledger_entries_sign_of_kind,
            ADD CONSTRAINT ledger_entries_sign_of_kind
                CHECK ((kind = 'fine') = (amount > 0) AND amount <> 0),
            DROP CONSTRAINT ledger_entries_kind_known,
            ADD CONSTRAINT ledger_entries_kind_known
                CHECK (kind IN ('fine', 'payment', 'waiver'))
        """
    )
    op.execute(
        """
        ALTER TABLE borrows
            DROP CONSTRAINT borrows_lost_has_date,
            DROP CONSTRAINT borrows_lent_has_dates,
            ADD CONSTRAINT borrows_lent_has_dates CHECK (
                (status IN ('active', 'returned'))
                = (borrowed_at IS NOT NULL AND due_at IS NOT NULL)
            ),
            DROP CONSTRAINT borrows_status_known,
            ADD CONSTRAINT borrows_status_known
                CHECK (status IN ('pending', 'active', 'returned', 'held', 'rejected')),
            DROP COLUMN lost_at
        """
    )
    op.execute(
        "ALTER TABLE lending_policies DROP COLUMN lost_processing_fee, DROP COLUMN lost_after_days"
    )
