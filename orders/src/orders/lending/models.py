"""Members, their loans (`borrows`) and holds, and the notices sent about them.

Constraints live in migration 0003 as well (the loan counter, one copy of a book per
member, one open hold per member and book).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Integer,
    Numeric,
    SmallInteger,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.orm import Mapped, column_property, mapped_column

from orders.db import Base


def _text_enum(enum: type[StrEnum]) -> Enum:
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        values_callable=lambda members: [member.value for member in members],
    )


def _timestamp(*, server_default: bool = False) -> Mapped[datetime]:
    return mapped_column(
        TIMESTAMP(timezone=True), server_default=func.now() if server_default else None
    )


class MemberStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"


class BorrowStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETURNED = "returned"
    HELD = "held"
    REJECTED = "rejected"
    # Overdue past its policy's `lost_after_days`: charged, no longer against the limit.
    LOST = "lost"


class HoldStatus(StrEnum):
    WAITING = "waiting"
    # In the queue, keeping its place, but passed over when a copy is handed over.
    SUSPENDED = "suspended"
    READY = "ready"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class LedgerKind(StrEnum):
    """Charges (positive amounts) and credits (negative) in a member's ledger."""

    FINE = "fine"
    PAYMENT = "payment"
    WAIVER = "waiver"
    # A lost loan: the book's price, and the policy's processing fee.
    LOST_ITEM = "lost_item"
    PROCESSING_FEE = "processing_fee"
    # The lost loan's copy came back: its replacement charge, given back.
    REFUND = "refund"


class NoticeKind(StrEnum):
    DUE_SOON = "due_soon"
    OVERDUE_1 = "overdue_1"
    OVERDUE_2 = "overdue_2"
    # The final overdue notice: it blocks members of categories that say so.
    OVERDUE_3 = "overdue_3"
    HOLD_READY = "hold_ready"
    HOLD_EXPIRING = "hold_expiring"


class NoticeStatus(StrEnum):
    """queued: recorded, its mail (or the member's digest) to come; retrying: an attempt
    failed and another will follow; sent; failed: the last attempt failed."""

    QUEUED = "queued"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"


class NoticeDelivery(StrEnum):
    # No docstring: the OpenAPI document would take either it or the field's description
    # for the enum's schema, whichever it met first.

    EACH = "each"
    DIGEST = "digest"


class MemberCategory(Base):
    """A kind of member (`adult`, `child`, `staff`): their loan limit and block thresholds."""

    __tablename__ = "member_categories"
    __mapper_args__ = {"eager_defaults": True}

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    max_loans: Mapped[int] = mapped_column(Integer)
    # Fines owed (the member's balance) above this block borrowing, renewing and new holds.
    max_balance: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    # More loans overdue than this block borrowing, renewing and new holds.
    max_overdue_loans: Mapped[int] = mapped_column(Integer)
    # A loan still out after its final (3rd) overdue notice blocks the member.
    block_after_final_notice: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = _timestamp(server_default=True)
    updated_at: Mapped[datetime] = _timestamp(server_default=True)


class Member(Base):
    __tablename__ = "members"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text)
    status: Mapped[MemberStatus] = mapped_column(_text_enum(MemberStatus))
    category: Mapped[str] = mapped_column(Text, server_default="adult")
    # The member's own limit; None: their category's.
    max_loans: Mapped[int | None] = mapped_column(Integer)
    # Pending and active borrows: what the loan limit is checked against.
    loans_out: Mapped[int] = mapped_column(Integer, server_default="0")
    # What the member owes: the sum of their ledger, kept by a trigger (migration 0013).
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), server_default="0")
    notice_delivery: Mapped[NoticeDelivery] = mapped_column(
        _text_enum(NoticeDelivery), server_default="each"
    )
    created_at: Mapped[datetime] = _timestamp(server_default=True)
    updated_at: Mapped[datetime] = _timestamp(server_default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    # The limit in force: their own, else their category's. An SQL expression, so the
    # statement that takes a loan slot checks it as it stands when it runs.
    loan_limit: Mapped[int] = column_property(
        func.coalesce(
            max_loans,
            select(MemberCategory.max_loans)
            .where(MemberCategory.code == category)
            .correlate_except(MemberCategory)
            .scalar_subquery(),
        )
    )


class Borrow(Base):
    """A request to borrow a copy, and the loan it becomes."""

    __tablename__ = "borrows"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    book_id: Mapped[int] = mapped_column(BigInteger)
    book_title: Mapped[str] = mapped_column(Text)
    book_author: Mapped[str] = mapped_column(Text)
    status: Mapped[BorrowStatus] = mapped_column(_text_enum(BorrowStatus))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    # The hold this request became when no copy was free, or the hold it was borrowed from.
    hold_id: Mapped[int | None] = mapped_column(BigInteger)
    requested_at: Mapped[datetime] = _timestamp(server_default=True)
    borrowed_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    due_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    returned_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    # When it was declared lost (kept once the copy comes back).
    lost_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    renewals: Mapped[int] = mapped_column(Integer, server_default="0")
    late_fee: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    # What the lending policies are matched on, and a fine capped at the book's price
    # needs: the book's as they were when the borrow was requested.
    item_type: Mapped[str] = mapped_column(Text, server_default="book")
    book_price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    updated_at: Mapped[datetime] = _timestamp(server_default=True)
    # How often, and when last, the reconciler announced the pending borrow again.
    redrives: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    redriven_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))

    @property
    def reference(self) -> str:
        """What books knows this loan's copy by."""
        return f"borrow:{self.id}"


class Hold(Base):
    """A member's place in a book's queue, and the copy set aside once one is free."""

    __tablename__ = "holds"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    book_id: Mapped[int] = mapped_column(BigInteger)
    book_title: Mapped[str] = mapped_column(Text)
    book_author: Mapped[str] = mapped_column(Text)
    status: Mapped[HoldStatus] = mapped_column(_text_enum(HoldStatus))
    # Where the copy set aside for this hold came from: the reference of a returned loan
    # or of a cancelled or expired hold (`borrow:12`, `hold:4`), or `shelf:<hold id>`.
    # Unique: a freed copy goes to one hold only.
    copy_from: Mapped[str | None] = mapped_column(Text)
    borrow_id: Mapped[int | None] = mapped_column(BigInteger)
    item_type: Mapped[str] = mapped_column(Text, server_default="book")
    # The hold's place in its book's queue, lowest first: the order holds were placed in,
    # until staff reorder the queue (migration 0017).
    queue_rank: Mapped[int] = mapped_column(
        BigInteger, server_default=func.nextval("holds_queue_rank_seq")
    )
    # A suspended hold resumes by itself on this UTC date (the library sweep); None: when
    # the member resumes it.
    suspended_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = _timestamp(server_default=True)
    ready_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    pickup_by: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    updated_at: Mapped[datetime] = _timestamp(server_default=True)

    @property
    def reference(self) -> str:
        return f"hold:{self.id}"


class Notice(Base):
    """One notice about a loan or hold (its subject), and how its delivery went.

    Unique per (kind, subject, deadline): see migration 0016."""

    __tablename__ = "notices"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[NoticeKind] = mapped_column(_text_enum(NoticeKind))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    # The UTC day it was recorded: a digest gathers the notices of one day.
    day: Mapped[date] = mapped_column(Date)
    # The loan's due date or the hold's pickup deadline it is about; null only for
    # notices recorded before migration 0016.
    deadline: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    status: Mapped[NoticeStatus] = mapped_column(_text_enum(NoticeStatus), server_default="queued")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    via_digest: Mapped[bool] = mapped_column(Boolean, server_default="false")
    digest_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _timestamp(server_default=True)
    updated_at: Mapped[datetime] = _timestamp(server_default=True)


class Policy(Base):
    """A lending policy, matched on (member category, item type); None is "any"."""

    __tablename__ = "lending_policies"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_category: Mapped[str | None] = mapped_column(Text, ForeignKey("member_categories.code"))
    item_type: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    lendable: Mapped[bool] = mapped_column(Boolean)
    loan_period_days: Mapped[int] = mapped_column(Integer)
    max_renewals: Mapped[int] = mapped_column(Integer)
    renew_grace_days: Mapped[int] = mapped_column(Integer)
    max_loans: Mapped[int | None] = mapped_column(Integer)
    fine_per_day: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    # None: the book's price.
    fine_cap: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    grace_days: Mapped[int] = mapped_column(Integer)
    holds_allowed: Mapped[bool] = mapped_column(Boolean)
    hold_pickup_days: Mapped[int] = mapped_column(Integer)
    # Days overdue after which a loan is lost; None: never.
    lost_after_days: Mapped[int | None] = mapped_column(Integer)
    lost_processing_fee: Mapped[Decimal] = mapped_column(Numeric(10, 2), server_default="0")
    # Days after the due date the 1st, 2nd and 3rd (final) overdue notices go out.
    overdue_notice_days: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), server_default="{1,7,14}"
    )
    # Open holds of this kind a member may have at once; None: no cap.
    max_holds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _timestamp(server_default=True)
    updated_at: Mapped[datetime] = _timestamp(server_default=True)

    @property
    def is_default(self) -> bool:
        return self.member_category is None and self.item_type is None


class PolicyAction(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class PolicyChange(Base):
    """One change of a lending policy: who made it, when, and the policy before and after."""

    __tablename__ = "lending_policy_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    policy_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[PolicyAction] = mapped_column(_text_enum(PolicyAction))
    api_key_id: Mapped[int | None] = mapped_column(BigInteger)
    api_key_prefix: Mapped[str] = mapped_column(Text)
    api_key_name: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = _timestamp(server_default=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))


class LedgerEntry(Base):
    """One charge or credit of a member; never changed or deleted (migration 0013)."""

    __tablename__ = "ledger_entries"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    kind: Mapped[LedgerKind] = mapped_column(_text_enum(LedgerKind))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    borrow_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("borrows.id"))
    reason: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp(server_default=True)


class OverrideAction(StrEnum):
    BORROW = "borrow"
    RENEW = "renew"
    HOLD = "hold"
    CHECKOUT = "checkout"


class BlockOverride(Base):
    """One action a librarian let through a member's block, and why (migration 0016)."""

    __tablename__ = "block_overrides"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id"))
    action: Mapped[OverrideAction] = mapped_column(_text_enum(OverrideAction))
    # The block's rule, as the refusal would have named it.
    rule: Mapped[dict[str, Any]] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp(server_default=True)


class ClosingStatus(StrEnum):
    MOVING = "moving"
    DONE = "done"


class Closing(Base):
    """Days closed at short notice, and the due dates and pickup deadlines it moved."""

    __tablename__ = "closings"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[ClosingStatus] = mapped_column(
        _text_enum(ClosingStatus), server_default=ClosingStatus.MOVING.value
    )
    loans_moved: Mapped[int] = mapped_column(Integer, server_default="0")
    holds_moved: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _timestamp(server_default=True)
    finished_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))


class ClosedDay(Base):
    """A UTC date the library is closed: no loan falls due on it."""

    __tablename__ = "closed_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reason: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _timestamp(server_default=True)
