"""notices completed: overdue 1st/2nd/3rd at policy days, hold expiring, one notice per
kind, subject and deadline, delivery records, daily digests, and the final-notice block

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

A notice is recorded once per (kind, subject, deadline): the deadline is the loan's due
date or the hold's pickup deadline when it was recorded, so a renewed loan (a new due
date) gets a new courtesy notice, while repeats of the same one (a second sweep, two
sweeps at once) insert nothing. The former daily `overdue` reminders become the first
overdue notice; their rows keep a null deadline, which conflicts with nothing.

Delivery: `status` queued (recorded, waiting for a mail job or the member's digest),
retrying (an attempt failed, RQ tries again), sent, failed (the last attempt failed);
`attempts` counts the attempts the workers reported, `last_error` says why the last
failed one did. Rows recorded before this migration never had a delivery record: they
are marked sent with no `sent_at`, the outcome their mail job reached, unknown here.
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

KINDS = "'due_soon', 'overdue_1', 'overdue_2', 'overdue_3', 'hold_ready', 'hold_expiring'"


def upgrade() -> None:
    op.execute("ALTER TABLE notices DROP CONSTRAINT notices_kind_known")
    op.execute("ALTER TABLE notices DROP CONSTRAINT notices_once_a_day")
    op.execute("UPDATE notices SET kind = 'overdue_1' WHERE kind = 'overdue'")
    op.execute(
        f"ALTER TABLE notices ADD CONSTRAINT notices_kind_known CHECK (kind IN ({KINDS}))"
    )
    op.execute(
        """
        ALTER TABLE notices
            ADD COLUMN deadline timestamptz,
            ADD COLUMN status text NOT NULL DEFAULT 'sent' CONSTRAINT notices_status_known
                CHECK (status IN ('queued', 'retrying', 'sent', 'failed')),
            ADD COLUMN attempts integer NOT NULL DEFAULT 0
                CONSTRAINT notices_attempts_not_negative CHECK (attempts >= 0),
            ADD COLUMN last_error text,
            ADD COLUMN sent_at timestamptz,
            ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
            -- Mailed in the member's daily digest rather than on its own.
            ADD COLUMN via_digest boolean NOT NULL DEFAULT false,
            -- The digest that carries it: the id of the digest's first notice.
            ADD COLUMN digest_id bigint
        """
    )
    # Constant defaults above (no rewrite); new rows start queued.
    op.execute("ALTER TABLE notices ALTER COLUMN status SET DEFAULT 'queued'")
    op.execute(
        "ALTER TABLE notices ADD CONSTRAINT notices_once UNIQUE (kind, subject_id, deadline)"
    )
    # A member's notices, newest first; the staff list by status.
    op.execute("CREATE INDEX notices_member_idx ON notices (member_id, id)")
    op.execute("CREATE INDEX notices_status_idx ON notices (status, id)")
    # Digest notices not yet in a digest: what the sweep gathers each day.
    op.execute(
        "CREATE INDEX notices_digest_pending_idx ON notices (day, member_id)"
        " WHERE via_digest AND digest_id IS NULL"
    )
    op.execute(
        "ALTER TABLE members ADD COLUMN notice_delivery text NOT NULL DEFAULT 'each'"
        " CONSTRAINT members_notice_delivery_known CHECK (notice_delivery IN ('each', 'digest'))"
    )
    op.execute(
        "ALTER TABLE member_categories"
        " ADD COLUMN block_after_final_notice boolean NOT NULL DEFAULT false"
    )
    op.execute(
        """
        ALTER TABLE lending_policies
            ADD COLUMN overdue_notice_days integer[] NOT NULL DEFAULT '{1,7,14}'
            CONSTRAINT lending_policies_overdue_notice_days CHECK (
                cardinality(overdue_notice_days) = 3
                AND array_ndims(overdue_notice_days) = 1
                AND overdue_notice_days[1] >= 0
                AND overdue_notice_days[1] <= overdue_notice_days[2]
                AND overdue_notice_days[2] <= overdue_notice_days[3]
                AND overdue_notice_days[3] <= 365
            )
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE lending_policies DROP COLUMN overdue_notice_days")
    op.execute("ALTER TABLE member_categories DROP COLUMN block_after_final_notice")
    op.execute("ALTER TABLE members DROP COLUMN notice_delivery")
    op.execute("DROP INDEX notices_digest_pending_idx")
    op.execute("DROP INDEX notices_status_idx")
    op.execute("DROP INDEX notices_member_idx")
    op.execute("ALTER TABLE notices DROP CONSTRAINT notices_once")
    op.execute(
        "ALTER TABLE notices DROP COLUMN deadline, DROP COLUMN status, DROP COLUMN attempts,"
        " DROP COLUMN last_error, DROP COLUMN sent_at, DROP COLUMN updated_at,"
        " DROP COLUMN via_digest, DROP COLUMN digest_id"
    )
    op.execute("ALTER TABLE notices DROP CONSTRAINT notices_kind_known")
    # The old table kept one overdue reminder per loan and day, and no expiring notices.
    op.execute("DELETE FROM notices WHERE kind IN ('overdue_2', 'overdue_3', 'hold_expiring')")
    op.execute("UPDATE notices SET kind = 'overdue' WHERE kind = 'overdue_1'")
    op.execute(
        "ALTER TABLE notices ADD CONSTRAINT notices_kind_known"
        " CHECK (kind IN ('due_soon', 'overdue', 'hold_ready'))"
    )
    op.execute(
        "ALTER TABLE notices ADD CONSTRAINT notices_once_a_day UNIQUE (kind, subject_id, day)"
    )
