"""Wire formats of lending: money as 2-decimal strings, timestamps in UTC with `Z`."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from orders.lending.models import Borrow, BorrowStatus, Hold, HoldStatus, Member, MemberStatus
from orders.ordering.schemas import Id, Money, money, utc

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"\S", examples=["Ada Lovelace"])]
Email = Annotated[
    str,
    Meta(
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Unique among members, ignoring case.",
        examples=["ada@example.org"],
    ),
]
MaxLoans = Annotated[
    int, Meta(ge=0, le=1000, description="Loans the member may have out or requested at once.")
]
Reference = Annotated[str, Meta(pattern=r"^(borrow|hold):[0-9]{1,19}$", examples=["borrow:12"])]


class MemberCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    email: Email
    max_loans: MaxLoans | UnsetType = UNSET
    status: MemberStatus = MemberStatus.ACTIVE

    def __post_init__(self) -> None:
        self.name = self.name.strip()
        self.email = self.email.strip()


class MemberUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Partial update: only the fields sent change."""

    name: Name | UnsetType = UNSET
    email: Email | UnsetType = UNSET
    status: MemberStatus | UnsetType = UNSET
    max_loans: MaxLoans | UnsetType = UNSET

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
    id: int
    name: str
    email: str
    status: MemberStatus
    max_loans: int
    loans_out: Annotated[int, Meta(description="Loans out or requested now.")]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, member: Member) -> MemberRead:
        return cls(
            id=member.id,
            name=member.name,
            email=member.email,
            status=member.status,
            max_loans=member.max_loans,
            loans_out=member.loans_out,
            created_at=utc(member.created_at),
            updated_at=utc(member.updated_at),
        )


class MemberPage(msgspec.Struct, kw_only=True):
    data: list[MemberRead]
    total: int
    limit: int
    offset: int


class BorrowCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    member_id: Id
    book_id: Id


class BorrowListStatus(StrEnum):
    """A borrow status, or `overdue`: active loans past their due date."""

    PENDING = "pending"
    ACTIVE = "active"
    OVERDUE = "overdue"
    RETURNED = "returned"
    HELD = "held"
    REJECTED = "rejected"


class BorrowRead(msgspec.Struct, kw_only=True):
    id: int
    member_id: int
    book_id: int
    book_title: str
    book_author: str
    status: Annotated[
        BorrowStatus,
        Meta(
            description="pending (a copy is being checked out), active (lent), returned, "
            "held (no copy was free: the request became the hold `hold_id`), rejected."
        ),
    ]
    overdue: Annotated[bool, Meta(description="Active and past its due date.")]
    rejection_reason: str | None
    hold_id: int | None
    requested_at: datetime
    borrowed_at: datetime | None
    due_at: datetime | None
    returned_at: datetime | None
    renewals: int
    late_fee: Annotated[
        Money | None, Meta(description="Set on return: per day late, capped; 0.00 on time.")
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
            overdue=borrow.status is BorrowStatus.ACTIVE
            and borrow.due_at is not None
            and borrow.due_at < now,
            rejection_reason=borrow.rejection_reason,
            hold_id=borrow.hold_id,
            requested_at=utc(borrow.requested_at),
            borrowed_at=_utc_or_none(borrow.borrowed_at),
            due_at=_utc_or_none(borrow.due_at),
            returned_at=_utc_or_none(borrow.returned_at),
            renewals=borrow.renewals,
            late_fee=None if borrow.late_fee is None else money(borrow.late_fee),
        )


class BorrowPage(msgspec.Struct, kw_only=True):
    data: list[BorrowRead]
    total: int
    limit: int
    offset: int


class HoldCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    member_id: Id
    book_id: Id


class HoldRead(msgspec.Struct, kw_only=True):
    id: int
    member_id: int
    book_id: int
    book_title: str
    book_author: str
    status: Annotated[
        HoldStatus,
        Meta(
            description="waiting (in the queue), ready (a copy is set aside until "
            "`pickup_by`), fulfilled (checked out as `borrow_id`), cancelled, expired."
        ),
    ]
    position: Annotated[
        int | None, Meta(description="Place in the book's queue (1 = next); null unless waiting.")
    ]
    pickup_by: datetime | None
    borrow_id: int | None
    created_at: datetime
    ready_at: datetime | None
    closed_at: datetime | None

    @classmethod
    def of(cls, hold: Hold, *, position: int | None = None) -> HoldRead:
        return cls(
            id=hold.id,
            member_id=hold.member_id,
            book_id=hold.book_id,
            book_title=hold.book_title,
            book_author=hold.book_author,
            status=hold.status,
            position=position if hold.status is HoldStatus.WAITING else None,
            pickup_by=_utc_or_none(hold.pickup_by),
            borrow_id=hold.borrow_id,
            created_at=utc(hold.created_at),
            ready_at=_utc_or_none(hold.ready_at),
            closed_at=_utc_or_none(hold.closed_at),
        )


class HoldPage(msgspec.Struct, kw_only=True):
    data: list[HoldRead]
    total: int
    limit: int
    offset: int


class BorrowReject(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"\S")]


class HandOver(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    book_id: Id
    from_reference: Reference


class HandOverRead(msgspec.Struct, kw_only=True):
    hold: HoldRead | None


class SweepRead(msgspec.Struct, kw_only=True):
    expired_holds: int
    notices: int
    more: Annotated[bool, Meta(description="A batch was full: call again.")]


class LibrarySummary(msgspec.Struct, kw_only=True):
    loans_out: Annotated[int, Meta(description="Active loans.")]
    overdue: Annotated[int, Meta(description="Active loans past their due date.")]
    holds_waiting: int
    holds_ready: int
    members: Annotated[int, Meta(description="Members (not deleted).")]
    members_borrowing: Annotated[int, Meta(description="Members with a loan out or requested.")]
    utilization: Annotated[
        float, Meta(description="Share of members with a loan out or requested, 0 to 1.")
    ]


class PopularBook(msgspec.Struct, kw_only=True):
    book_id: int
    book_title: str
    book_author: str
    loans: int


class TopMember(msgspec.Struct, kw_only=True):
    member_id: int
    name: str
    loans: int


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)
