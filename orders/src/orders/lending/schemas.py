"""Wire formats of lending: money as 2-decimal strings, timestamps in UTC with `Z`."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from orders.lending.models import (
    BlockOverride,
    Borrow,
    BorrowStatus,
    Hold,
    HoldStatus,
    LedgerEntry,
    LedgerKind,
    Member,
    MemberStatus,
    Notice,
    NoticeDelivery,
    NoticeKind,
    NoticeStatus,
    OverrideAction,
)
from orders.ordering.schemas import BuyInstead, Id, Money, money, utc
from orders.problems import Rule

if TYPE_CHECKING:
    from orders.lending.waits import Outlook

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

# Some non-space; no NUL (U+0000), which PostgreSQL cannot store.
Name = Annotated[
    str,
    Meta(
        min_length=1, max_length=200, pattern=r"(?s)^(?=.*\S)[^\x00]*$", examples=["Ada Lovelace"]
    ),
]
Email = Annotated[
    str,
    Meta(
        max_length=254,
        # Spaces spelled out: `\s` is not the same class in Python and in the document's
        # (ECMAScript) regexes, which disagree on \x1c-\x1f.
        pattern=r"^[^@ \t\n\r\f\v\x00]+@[^@ \t\n\r\f\v\x00]+\.[^@ \t\n\r\f\v\x00]+$",
        description="Unique among members, ignoring case.",
        examples=["ada@example.org"],
    ),
]
MaxLoans = Annotated[
    int,
    Meta(
        ge=0,
        le=1000,
        description="The member's own limit of loans out or requested at once, instead of "
        "their category's.",
    ),
]
CategoryCode = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="The member's category (`GET /v1/member-categories`): it sets their loan "
        "limit and block thresholds.",
        examples=["adult"],
    ),
]
Reference = Annotated[str, Meta(pattern=r"^(borrow|hold):[0-9]{1,19}$", examples=["borrow:12"])]


MemberId = Annotated[int, Meta(description="The member's id.")]
BookId = Annotated[int, Meta(description="The book's id in the books service.")]
BookTitle = Annotated[str, Meta(description="The book's title when the request was made.")]
BookAuthor = Annotated[str, Meta(description="The book's author when the request was made.")]
Timestamp = Annotated[datetime, Meta(description="UTC, RFC 3339.")]


MemberStatusField = Annotated[
    MemberStatus, Meta(description="active, or blocked: a blocked member cannot borrow or hold.")
]
MemberName = Annotated[str, Meta(description="Full name, as on the library card.")]
NoticeDeliveryField = Annotated[
    NoticeDelivery,
    Meta(
        description="each: every notice mailed on its own, at once; digest: one mail a day "
        "with all the notices of the day before."
    ),
]


class MemberCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[Name, Meta(description="Full name, as on the library card.")]
    email: Email
    max_loans: MaxLoans | None = None
    status: MemberStatusField = MemberStatus.ACTIVE
    category: CategoryCode = "adult"
    notice_delivery: NoticeDeliveryField = NoticeDelivery.EACH

    def __post_init__(self) -> None:
        self.name = self.name.strip()
        self.email = self.email.strip()


class MemberUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Partial update: only the fields sent change."""

    name: Annotated[Name, Meta(description="Full name, as on the library card.")] | UnsetType = (
        UNSET
    )
    email: Email | UnsetType = UNSET
    status: MemberStatusField | UnsetType = UNSET
    max_loans: MaxLoans | UnsetType | None = UNSET
    category: CategoryCode | UnsetType = UNSET
    notice_delivery: NoticeDeliveryField | UnsetType = UNSET

    def __post_init__(self) -> None:
        if isinstance(self.name, str):
            self.name = self.name.strip()
        if isinstance(self.email, str):
            self.email = self.email.strip()

    def changes(self) -> dict[str, object]:
        return {
            field: value
            for field in self.__struct_fields__
            if (value := getattr(self, field)) is not UNSET
        }


class MemberRead(msgspec.Struct, kw_only=True):
    id: MemberId
    name: MemberName
    email: Annotated[str, Meta(description="Where notices are mailed; unique, ignoring case.")]
    status: MemberStatusField
    category: CategoryCode
    max_loans: Annotated[
        int,
        Meta(
            description="Loans the member may have out or requested: their own limit, else "
            "their category's."
        ),
    ]
    own_max_loans: Annotated[
        int | None, Meta(description="The member's own limit; null: their category's applies.")
    ]
    loans_out: Annotated[int, Meta(description="Loans out or requested now.")]
    balance: Annotated[
        Money, Meta(description="What the member owes: the sum of their ledger's entries.")
    ]
    notice_delivery: NoticeDeliveryField
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, member: Member) -> MemberRead:
        return cls(
            id=member.id,
            name=member.name,
            email=member.email,
            status=member.status,
            category=member.category,
            max_loans=member.loan_limit,
            own_max_loans=member.max_loans,
            loans_out=member.loans_out,
            balance=money(member.balance),
            notice_delivery=member.notice_delivery,
            created_at=utc(member.created_at),
            updated_at=utc(member.updated_at),
        )


Total = Annotated[int, Meta(description="Items matching the filters (not just this page).")]
PageLimit = Annotated[int, Meta(description="Page size used.")]
PageOffset = Annotated[int, Meta(description="Items skipped.")]


class MemberPage(msgspec.Struct, kw_only=True):
    data: Annotated[list[MemberRead], Meta(description="This page's members.")]
    total: Total
    limit: PageLimit
    offset: PageOffset


class BorrowCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    member_id: Annotated[Id, Meta(description="Who borrows.")]
    book_id: Annotated[Id, Meta(description="The book to lend a copy of.")]


class BorrowListStatus(StrEnum):
    """A borrow status, or `overdue`: active loans past their due date."""

    PENDING = "pending"
    ACTIVE = "active"
    OVERDUE = "overdue"
    RETURNED = "returned"
    HELD = "held"
    REJECTED = "rejected"
    LOST = "lost"


def is_overdue(status: BorrowStatus, due_at: datetime | None, *, now: datetime) -> bool:
    """A borrow's `overdue`: active and past its due date at `now` (`LoanService.now()`)."""
    return status is BorrowStatus.ACTIVE and due_at is not None and due_at < now


class BorrowRead(msgspec.Struct, kw_only=True):
    id: Annotated[int, Meta(description="The borrow's id.")]
    member_id: MemberId
    book_id: BookId
    book_title: BookTitle
    book_author: BookAuthor
    status: Annotated[
        BorrowStatus,
        Meta(
            description="pending (a copy is being checked out), active (lent), returned, "
            "held (no copy was free: the request became the hold `hold_id`), rejected, "
            "lost (overdue past its policy's `lost_after_days`: charged the book's price and "
            "a processing fee, refunded the price if it is returned)."
        ),
    ]
    overdue: Annotated[bool, Meta(description="Active and past its due date.")]
    rejection_reason: Annotated[
        str | None, Meta(description="Why the borrow was rejected; null unless rejected.")
    ]
    hold_id: Annotated[
        int | None,
        Meta(description="The hold the request became (held), or was borrowed from; else null."),
    ]
    requested_at: Timestamp
    borrowed_at: Annotated[datetime | None, Meta(description="When the copy was checked out.")]
    due_at: Annotated[datetime | None, Meta(description="When the copy is due back.")]
    returned_at: Annotated[datetime | None, Meta(description="When the copy came back.")]
    lost_at: Annotated[
        datetime | None, Meta(description="When the loan was declared lost; else null.")
    ]
    renewals: Annotated[int, Meta(description="Times the loan was renewed.")]
    late_fee: Annotated[
        Money | None,
        Meta(
            description="Set on return (or when declared lost): per day late, capped, days "
            "starting on a closed day not counted; 0.00 on time."
        ),
    ]

    @classmethod
    def of(cls, borrow: Borrow, *, now: datetime) -> BorrowRead:
        return cls(
            id=borrow.id,
            member_id=borrow.member_id,
            book_id=borrow.book_id,
            book_title=borrow.book_title,
            book_author=borrow.book_author,
            status=borrow.status,
            overdue=is_overdue(borrow.status, borrow.due_at, now=now),
            rejection_reason=borrow.rejection_reason,
            hold_id=borrow.hold_id,
            requested_at=utc(borrow.requested_at),
            borrowed_at=utc_or_none(borrow.borrowed_at),
            due_at=utc_or_none(borrow.due_at),
            returned_at=utc_or_none(borrow.returned_at),
            lost_at=utc_or_none(borrow.lost_at),
            renewals=borrow.renewals,
            late_fee=None if borrow.late_fee is None else money(borrow.late_fee),
        )


class BorrowPage(msgspec.Struct, kw_only=True):
    data: Annotated[list[BorrowRead], Meta(description="This page's borrows.")]
    total: Total
    limit: PageLimit
    offset: PageOffset


class HoldCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    member_id: Annotated[Id, Meta(description="Who queues.")]
    book_id: Annotated[Id, Meta(description="The book to queue for.")]


class HoldRead(msgspec.Struct, kw_only=True):
    id: Annotated[int, Meta(description="The hold's id.")]
    member_id: MemberId
    book_id: BookId
    book_title: BookTitle
    book_author: BookAuthor
    status: Annotated[
        HoldStatus,
        Meta(
            description="waiting (in the queue), suspended (in the queue, keeping its "
            "place, but passed over by the copies that come back until resumed), ready (a "
            "copy is set aside until `pickup_by`), fulfilled (checked out as `borrow_id`), "
            "cancelled, expired."
        ),
    ]
    position: Annotated[
        int | None,
        Meta(
            description="Place in the book's queue (1 = first), suspended holds ahead "
            "included; null unless waiting or suspended."
        ),
    ]
    estimated_available_at: Annotated[
        datetime | None,
        Meta(
            description="When a copy should come to a waiting hold: the loans out come back "
            "by their due dates (none can be renewed while members wait) and each hold ahead "
            "keeps a copy one loan period; suspended holds ahead are passed over and do not "
            "count. Null unless waiting."
        ),
    ]
    buy_instead: Annotated[
        BuyInstead | None,
        Meta(
            description="Set when the estimated wait is longer than "
            "ORDERS_BUY_INSTEAD_AFTER_DAYS (14) and the shop has the book in stock."
        ),
    ]
    suspended_until: Annotated[
        date | None,
        Meta(
            description="A suspended hold resumes by itself on this UTC date; null: when "
            "resumed (`POST /v1/holds/{id}/resume`), or not suspended."
        ),
    ]
    pickup_by: Annotated[
        datetime | None,
        Meta(
            description="A ready hold's copy is kept until then: its policy's "
            "`hold_pickup_days` counted in open days (closed days are skipped)."
        ),
    ]
    borrow_id: Annotated[int | None, Meta(description="The loan a fulfilled hold became.")]
    created_at: Timestamp
    ready_at: Annotated[datetime | None, Meta(description="When a copy was set aside.")]
    closed_at: Annotated[
        datetime | None, Meta(description="When it was fulfilled, cancelled or expired.")
    ]

    @classmethod
    def of(cls, hold: Hold, *, outlook: Outlook | None = None) -> HoldRead:
        queued = hold.status in (HoldStatus.WAITING, HoldStatus.SUSPENDED)
        waiting = outlook if outlook is not None and queued else None
        return cls(
            id=hold.id,
            member_id=hold.member_id,
            book_id=hold.book_id,
            book_title=hold.book_title,
            book_author=hold.book_author,
            status=hold.status,
            position=waiting.position if waiting else None,
            estimated_available_at=(
                utc_or_none(waiting.estimated_available_at) if waiting else None
            ),
            buy_instead=waiting.buy_instead if waiting else None,
            suspended_until=hold.suspended_until,
            pickup_by=utc_or_none(hold.pickup_by),
            borrow_id=hold.borrow_id,
            created_at=utc(hold.created_at),
            ready_at=utc_or_none(hold.ready_at),
            closed_at=utc_or_none(hold.closed_at),
        )


class HoldSuspend(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    until: Annotated[
        date | None,
        Meta(
            description="The UTC date the hold resumes by itself (after today); absent or "
            "null: it stays suspended until resumed.",
            examples=["2026-12-28"],
        ),
    ] = None


class QueueOrder(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    hold_ids: Annotated[
        list[Id],
        Meta(
            min_length=1,
            max_length=1000,
            description="Every hold in the book's queue (waiting and suspended), each once, "
            "in the order they should get copies.",
            extra_json_schema={"uniqueItems": True},
        ),
    ]


class HoldQueue(msgspec.Struct, kw_only=True):
    book_id: BookId
    data: Annotated[
        list[HoldRead],
        Meta(description="The book's queue, first in line first (waiting and suspended holds)."),
    ]


class HoldPage(msgspec.Struct, kw_only=True):
    data: Annotated[list[HoldRead], Meta(description="This page's holds.")]
    total: Total
    limit: PageLimit
    offset: PageOffset


class BorrowReject(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"\S")]


class HandOver(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    book_id: Id
    from_reference: Reference


class HandOverRead(msgspec.Struct, kw_only=True):
    hold: HoldRead | None


class SweepRead(msgspec.Struct, kw_only=True):
    expired_holds: int
    resumed_holds: int
    lost_loans: int
    notices: int
    digests: int
    more: Annotated[bool, Meta(description="A batch was full: call again.")]


class LibrarySummary(msgspec.Struct, kw_only=True):
    loans_out: Annotated[int, Meta(description="Active loans.")]
    overdue: Annotated[int, Meta(description="Active loans past their due date.")]
    holds_waiting: Annotated[int, Meta(description="Holds in a queue, waiting for a copy.")]
    holds_ready: Annotated[int, Meta(description="Holds with a copy set aside for pickup.")]
    members: Annotated[int, Meta(description="Members (not deleted).")]
    members_borrowing: Annotated[int, Meta(description="Members with a loan out or requested.")]
    utilization: Annotated[
        float, Meta(description="Share of members with a loan out or requested, 0 to 1.")
    ]


Loans = Annotated[int, Meta(description="Loans made in the window.")]


class PopularBook(msgspec.Struct, kw_only=True):
    book_id: BookId
    book_title: Annotated[str, Meta(description="The title of its latest loan.")]
    book_author: Annotated[str, Meta(description="The author of its latest loan.")]
    loans: Loans


class DailyLoans(msgspec.Struct, kw_only=True):
    day: Annotated[date, Meta(description="A UTC day.")]
    loans: Loans


class TopMember(msgspec.Struct, kw_only=True):
    member_id: MemberId
    name: MemberName
    loans: Loans


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


class DryRunRead(msgspec.Struct, kw_only=True):
    """What a circulation action would do, asked with `dry_run=true`: nothing is recorded.
    A refusal is answered as the action itself would answer it (the same problem)."""

    dry_run: Annotated[bool, Meta(description="Always true: nothing was recorded.")]
    action: Annotated[str, Meta(description="borrow, renew, return, hold or checkout.")]
    outcome: Annotated[str, Meta(description="What would happen, in a sentence.")]
    policy_id: Annotated[int, Meta(description="The lending policy the action runs by.")]
    member_id: MemberId
    book_id: BookId
    due_at: Annotated[
        datetime | None,
        Meta(description="The due date the loan would get (a borrow: if a copy is free now)."),
    ] = None
    late_fee: Annotated[Money | None, Meta(description="The fine a return would record.")] = None
    position: Annotated[int | None, Meta(description="A hold's place in the queue (1 = next).")] = (
        None
    )
    pickup_by: Annotated[
        datetime | None, Meta(description="Until when a ready hold's copy would wait.")
    ] = None
    overrides: Annotated[
        Rule | None,
        Meta(
            description="With `override_reason`: the block the override would let the "
            "action through (null: the member is not blocked, nothing would be recorded)."
        ),
    ] = None


CreditAmount = Annotated[
    str,
    Meta(
        pattern=r"^(?!0+\.00$)[0-9]{1,8}\.[0-9]{2}$",
        description="A positive amount with two decimals, at most what the member owes.",
        examples=["2.50"],
    ),
]
Reason = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=500,
        pattern=r"(?s)^(?=.*\S)[^\x00]*$",
        description="Why, in words the member will read on their statement.",
        examples=["Paid in cash at the desk"],
    ),
]


class CreditCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A payment or a waiver: lowers what the member owes."""

    amount: CreditAmount
    reason: Reason
    borrow_id: (
        Annotated[Id, Meta(description="The loan whose fine this settles, if one.")] | None
    ) = None

    def __post_init__(self) -> None:
        self.reason = self.reason.strip()


class LedgerEntryRead(msgspec.Struct, kw_only=True):
    id: Annotated[int, Meta(description="The entry's id; entries are never changed.")]
    member_id: MemberId
    kind: Annotated[
        LedgerKind,
        Meta(
            description="Charges: fine, lost_item (a lost loan's book price), "
            "processing_fee (with a lost item). Credits: payment, waiver, refund (a lost "
            "copy returned: its lost_item given back)."
        ),
    ]
    amount: Annotated[
        str,
        Meta(
            pattern=r"^-?[0-9]+\.[0-9]{2}$",
            description="Charges are positive, credits negative.",
            examples=["1.50", "-1.50"],
        ),
    ]
    balance_after: Annotated[Money, Meta(description="What the member owed after this entry.")]
    borrow_id: Annotated[int | None, Meta(description="The loan it is about, if one.")]
    reason: Annotated[str, Meta(description="Why, as the member reads it.")]
    recorded_by: Annotated[
        str | None,
        Meta(
            description="The role and prefix of the API key that recorded it; null if the "
            "library recorded it (a fine at return)."
        ),
    ]
    created_at: Timestamp

    @classmethod
    def of(cls, entry: LedgerEntry, *, balance_after: Decimal) -> LedgerEntryRead:
        return cls(
            id=entry.id,
            member_id=entry.member_id,
            kind=entry.kind,
            amount=money(entry.amount),
            balance_after=money(balance_after),
            borrow_id=entry.borrow_id,
            reason=entry.reason,
            recorded_by=entry.recorded_by,
            created_at=utc(entry.created_at),
        )


class OverrideRead(msgspec.Struct, kw_only=True):
    id: Annotated[int, Meta(description="The override's id.")]
    member_id: MemberId
    action: Annotated[
        OverrideAction, Meta(description="What was let through: borrow, renew, hold, checkout.")
    ]
    rule: Annotated[Rule, Meta(description="The block, as the refusal would have named it.")]
    reason: Annotated[str, Meta(description="Why the librarian let it through.")]
    recorded_by: Annotated[str, Meta(description="The role and prefix of the key used.")]
    created_at: Timestamp

    @classmethod
    def of(cls, override: BlockOverride) -> OverrideRead:
        return cls(
            id=override.id,
            member_id=override.member_id,
            action=override.action,
            rule=msgspec.convert(override.rule, Rule),
            reason=override.reason,
            recorded_by=override.recorded_by,
            created_at=utc(override.created_at),
        )


class OverridePage(msgspec.Struct, kw_only=True):
    data: Annotated[list[OverrideRead], Meta(description="This page's overrides, newest first.")]
    total: Total
    limit: PageLimit
    offset: PageOffset


class LedgerPage(msgspec.Struct, kw_only=True):
    data: Annotated[list[LedgerEntryRead], Meta(description="This page's entries, newest first.")]
    balance: Annotated[Money, Meta(description="What the member owes now.")]
    total: Total
    limit: PageLimit
    offset: PageOffset


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"


class DeliveryReport(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How one attempt of a mail job went, for the notices its mail carried."""

    notice_ids: Annotated[list[Id], Meta(min_length=1, max_length=1000)]
    attempt: Annotated[int, Meta(ge=1, le=1000, description="1 for the first attempt.")]
    outcome: DeliveryOutcome
    error: Annotated[str, Meta(max_length=2000)] | None = None
    final: Annotated[bool, Meta(description="No attempt will follow a failed one.")] = False


NoticeStatusField = Annotated[
    NoticeStatus,
    Meta(
        description="queued (its mail, or the member's digest, is to come), retrying (an "
        "attempt failed; another follows), sent, or failed (the last attempt failed)."
    ),
]


class NoticeRead(msgspec.Struct, kw_only=True):
    id: Annotated[int, Meta(description="The notice's id.")]
    kind: Annotated[
        NoticeKind,
        Meta(
            description="due_soon (courtesy, before the due date), overdue_1, overdue_2, "
            "overdue_3 (the final one), hold_ready, hold_expiring."
        ),
    ]
    member_id: MemberId
    subject: Annotated[
        str,
        Meta(description="What it is about: `borrow:<id>` or `hold:<id>`.", examples=["borrow:12"]),
    ]
    deadline: Annotated[
        datetime | None,
        Meta(description="The due date or pickup deadline it is about (UTC, RFC 3339)."),
    ]
    via_digest: Annotated[bool, Meta(description="Mailed in the member's daily digest.")]
    status: NoticeStatusField
    attempts: Annotated[int, Meta(description="Attempts to mail it so far.")]
    last_error: Annotated[str | None, Meta(description="Why the last failed attempt failed.")]
    sent_at: Annotated[datetime | None, Meta(description="When the mail server took it.")]
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, notice: Notice) -> NoticeRead:
        about = (
            "hold" if notice.kind in (NoticeKind.HOLD_READY, NoticeKind.HOLD_EXPIRING) else "borrow"
        )
        return cls(
            id=notice.id,
            kind=notice.kind,
            member_id=notice.member_id,
            subject=f"{about}:{notice.subject_id}",
            deadline=None if notice.deadline is None else utc(notice.deadline),
            via_digest=notice.via_digest,
            status=notice.status,
            attempts=notice.attempts,
            last_error=notice.last_error,
            sent_at=None if notice.sent_at is None else utc(notice.sent_at),
            created_at=utc(notice.created_at),
            updated_at=utc(notice.updated_at),
        )


class NoticePage(msgspec.Struct, kw_only=True):
    data: Annotated[list[NoticeRead], Meta(description="This page's notices, newest first.")]
    total: Total
    limit: PageLimit
    offset: PageOffset


class DeliveryRead(msgspec.Struct, kw_only=True):
    notices: list[NoticeRead]
