"""Wire formats of the circulation rules: member categories and lending policies."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from orders.lending.models import (
    ClosedDay,
    Closing,
    ClosingStatus,
    MemberCategory,
    Policy,
    PolicyAction,
    PolicyChange,
)
from orders.ordering.schemas import Money, money, utc

Code = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Lower-case letters, digits, `-` and `_`, starting with a letter.",
        examples=["adult"],
    ),
]
Label = Annotated[
    str,
    Meta(min_length=1, max_length=100, pattern=r"(?s)^(?=.*\S)[^\x00]*$", examples=["Adult"]),
]
# An amount in, as the API writes amounts out: a string with two decimals.
AmountIn = Annotated[str, Meta(pattern=r"^\d{1,8}\.\d{2}$", examples=["10.00"])]
CategoryMaxLoans = Annotated[
    int, Meta(ge=0, le=1000, description="Loans a member of the category may have at once.")
]
MaxOverdue = Annotated[
    int,
    Meta(ge=0, le=1000, description="More loans overdue than this block the member."),
]

BlockAfterFinalNotice = Annotated[
    bool,
    Meta(
        description="true: a member with a loan still out after its final (3rd) overdue "
        "notice cannot borrow, renew or place holds."
    ),
]


class CategoryCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    name: Label
    max_loans: CategoryMaxLoans
    max_balance: Annotated[
        AmountIn, Meta(description="Fines owed above this will block the member.")
    ] = "10.00"
    max_overdue_loans: MaxOverdue = 0
    block_after_final_notice: BlockAfterFinalNotice = False

    def values(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name.strip(),
            "max_loans": self.max_loans,
            "max_balance": Decimal(self.max_balance),
            "max_overdue_loans": self.max_overdue_loans,
            "block_after_final_notice": self.block_after_final_notice,
        }


class CategoryUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Partial update: only the fields sent change."""

    name: Label | UnsetType = UNSET
    max_loans: CategoryMaxLoans | UnsetType = UNSET
    max_balance: AmountIn | UnsetType = UNSET
    max_overdue_loans: MaxOverdue | UnsetType = UNSET
    block_after_final_notice: BlockAfterFinalNotice | UnsetType = UNSET

    def changes(self) -> dict[str, object]:
        values: dict[str, object] = {
            field: value
            for field in self.__struct_fields__
            if (value := getattr(self, field)) is not UNSET
        }
        if isinstance(self.name, str):
            values["name"] = self.name.strip()
        if isinstance(self.max_balance, str):
            values["max_balance"] = Decimal(self.max_balance)
        return values


class CategoryRead(msgspec.Struct, kw_only=True):
    code: Code
    name: str
    max_loans: CategoryMaxLoans
    max_balance: Annotated[Money, Meta(description="Fines owed above this block the member.")]
    max_overdue_loans: MaxOverdue
    block_after_final_notice: BlockAfterFinalNotice
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, category: MemberCategory) -> CategoryRead:
        return cls(
            code=category.code,
            name=category.name,
            max_loans=category.max_loans,
            max_balance=money(category.max_balance),
            max_overdue_loans=category.max_overdue_loans,
            block_after_final_notice=category.block_after_final_notice,
            created_at=utc(category.created_at),
            updated_at=utc(category.updated_at),
        )


PolicyDays = Annotated[int, Meta(ge=0, le=365)]
FineCap = Annotated[
    str,
    Meta(
        pattern=r"^(\d{1,8}\.\d{2}|book_price)$",
        description="The most a late return is fined: an amount, or `book_price`.",
        examples=["10.00", "book_price"],
    ),
]
BOOK_PRICE = "book_price"
OverdueNoticeDays = Annotated[
    list[PolicyDays],
    Meta(
        min_length=3,
        max_length=3,
        description="Days after the due date the 1st, 2nd and 3rd (final) overdue notices "
        "go out; kept in increasing order. Each notice follows the one before a day later "
        "at least.",
        examples=[[1, 7, 14]],
    ),
]


class PolicyWrite(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A whole policy: `POST` creates one, `PUT` replaces one."""

    member_category: Annotated[
        Code | None, Meta(description="The member category it applies to; null: any.")
    ] = None
    item_type: Annotated[
        Code | None,
        Meta(description="The item type (a book's `format`) it applies to; null: any."),
    ] = None
    description: Annotated[str, Meta(max_length=500, pattern=r"^[^\x00]*$")] = ""
    lendable: Annotated[bool, Meta(description="false: such books are not lent at all.")] = True
    loan_period_days: Annotated[int, Meta(ge=1, le=3650, description="Days a loan lasts.")]
    max_renewals: Annotated[int, Meta(ge=0, le=100, description="Renewals allowed per loan.")]
    renew_grace_days: Annotated[
        PolicyDays, Meta(description="How long overdue a loan may still be renewed.")
    ] = 0
    max_loans: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=1000,
                description="Loans of this kind a member may have at once; null: only the "
                "member's total limit.",
            ),
        ]
        | None
    ) = None
    fine_per_day: Annotated[AmountIn, Meta(description="Fine per started day late.")]
    fine_cap: FineCap
    grace_days: Annotated[
        PolicyDays, Meta(description="A return this many days late or less is not fined.")
    ] = 0
    holds_allowed: Annotated[bool, Meta(description="false: such books cannot be held.")] = True
    hold_pickup_days: Annotated[
        int,
        Meta(
            ge=1,
            le=60,
            description="Open days a ready hold's copy waits for pickup (closed days are "
            "not counted).",
        ),
    ]
    lost_after_days: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=3650,
                description="Days overdue after which a loan is declared lost and charged "
                "the book's price plus `lost_processing_fee`; null: never.",
            ),
        ]
        | None
    ) = None
    lost_processing_fee: Annotated[
        AmountIn,
        Meta(description="Charged with a lost loan's price; not refunded if it comes back."),
    ] = "0.00"
    overdue_notice_days: OverdueNoticeDays = msgspec.field(default_factory=lambda: [1, 7, 14])
    max_holds: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=1000,
                description="Open holds (waiting, suspended or ready) of this kind a member "
                "may have at once; null: no cap.",
            ),
        ]
        | None
    ) = None

    def values(self) -> dict[str, object]:
        values = msgspec.structs.asdict(self)
        values["description"] = self.description.strip()
        values["fine_per_day"] = Decimal(self.fine_per_day)
        values["lost_processing_fee"] = Decimal(self.lost_processing_fee)
        values["fine_cap"] = None if self.fine_cap == BOOK_PRICE else Decimal(self.fine_cap)
        values["overdue_notice_days"] = sorted(self.overdue_notice_days)
        return values


class PolicyRead(msgspec.Struct, kw_only=True):
    id: Annotated[int, Meta(description="The policy's id.")]
    member_category: Annotated[str | None, Meta(description="null: any member category.")]
    item_type: Annotated[str | None, Meta(description="null: any item type.")]
    is_default: Annotated[
        bool, Meta(description="The policy of last resort (any, any); it cannot be deleted.")
    ]
    description: str
    lendable: bool
    loan_period_days: int
    max_renewals: int
    renew_grace_days: int
    max_loans: int | None
    fine_per_day: Money
    fine_cap: FineCap
    grace_days: int
    holds_allowed: bool
    hold_pickup_days: int
    lost_after_days: int | None
    lost_processing_fee: Money
    overdue_notice_days: OverdueNoticeDays
    max_holds: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, policy: Policy) -> PolicyRead:
        return cls(
            id=policy.id,
            member_category=policy.member_category,
            item_type=policy.item_type,
            is_default=policy.is_default,
            description=policy.description,
            lendable=policy.lendable,
            loan_period_days=policy.loan_period_days,
            max_renewals=policy.max_renewals,
            renew_grace_days=policy.renew_grace_days,
            max_loans=policy.max_loans,
            fine_per_day=money(policy.fine_per_day),
            fine_cap=BOOK_PRICE if policy.fine_cap is None else money(policy.fine_cap),
            grace_days=policy.grace_days,
            holds_allowed=policy.holds_allowed,
            hold_pickup_days=policy.hold_pickup_days,
            lost_after_days=policy.lost_after_days,
            lost_processing_fee=money(policy.lost_processing_fee),
            overdue_notice_days=list(policy.overdue_notice_days),
            max_holds=policy.max_holds,
            created_at=utc(policy.created_at),
            updated_at=utc(policy.updated_at),
        )


class PolicyChangeRead(msgspec.Struct, kw_only=True):
    id: int
    policy_id: int
    action: PolicyAction
    api_key_prefix: Annotated[str, Meta(description="The public prefix of the key used.")]
    api_key_name: Annotated[str | None, Meta(description="The key's name, as registered.")]
    changed_at: datetime
    before: Annotated[
        dict[str, Any] | None, Meta(description="The policy before; null when created.")
    ]
    after: Annotated[
        dict[str, Any] | None, Meta(description="The policy after; null when deleted.")
    ]

    @classmethod
    def of(cls, change: PolicyChange) -> PolicyChangeRead:
        return cls(
            id=change.id,
            policy_id=change.policy_id,
            action=change.action,
            api_key_prefix=change.api_key_prefix,
            api_key_name=change.api_key_name,
            changed_at=utc(change.changed_at),
            before=change.before,
            after=change.after,
        )


class PolicyChangePage(msgspec.Struct, kw_only=True):
    data: Annotated[list[PolicyChangeRead], Meta(description="This page's changes, newest first.")]
    total: int
    limit: int
    offset: int


class Candidate(msgspec.Struct, kw_only=True):
    rank: Annotated[int, Meta(description="1 is the most specific match.")]
    match: Annotated[
        str,
        Meta(
            description="`category and item type`, `category`, `item type` or `default`.",
            examples=["category and item type"],
        ),
    ]
    member_category: str | None
    item_type: str | None
    policy_id: Annotated[int | None, Meta(description="The policy with this match; null: none.")]


class Resolution(msgspec.Struct, kw_only=True):
    member_id: int
    book_id: int
    member_category: Annotated[str, Meta(description="The member's category.")]
    item_type: Annotated[str, Meta(description="The book's item type (`format`).")]
    policy: Annotated[PolicyRead, Meta(description="The policy that applies.")]
    candidates: Annotated[
        list[Candidate],
        Meta(
            description="Every match considered, most specific first; the first with a "
            "policy applies."
        ),
    ]
    reason: Annotated[str, Meta(description="Why this policy applies, in a sentence.")]


class ClosedDayCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    day: Annotated[date, Meta(description="A UTC date the library is closed.")]
    reason: Annotated[str, Meta(max_length=200, pattern=r"^[^\x00]*$")] = ""


class ClosedDayRead(msgspec.Struct, kw_only=True):
    day: Annotated[date, Meta(description="A UTC date the library is closed.")]
    reason: str
    created_at: datetime

    @classmethod
    def of(cls, closed: ClosedDay) -> ClosedDayRead:
        return cls(day=closed.day, reason=closed.reason, created_at=utc(closed.created_at))


class ClosingCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    first_day: Annotated[date, Meta(description="The first UTC date closed: today or later.")]
    last_day: Annotated[
        date, Meta(description="The last UTC date closed: at most 365 days after the first.")
    ]
    reason: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"(?s)^(?=.*\S)[^\x00]*$")]


class ClosingRead(msgspec.Struct, kw_only=True):
    id: int
    first_day: date
    last_day: date
    reason: str
    status: Annotated[
        ClosingStatus,
        Meta(description="moving (a job is moving due dates), done (all moved)."),
    ]
    loans_moved: Annotated[
        int, Meta(description="Active loans due on these days, now due the next open day.")
    ]
    holds_moved: Annotated[
        int,
        Meta(description="Ready holds whose pickup deadline fell on these days, moved too."),
    ]
    created_at: datetime
    finished_at: Annotated[datetime | None, Meta(description="When the move was done.")]

    @classmethod
    def of(cls, closing: Closing) -> ClosingRead:
        return cls(
            id=closing.id,
            first_day=closing.first_day,
            last_day=closing.last_day,
            reason=closing.reason,
            status=closing.status,
            loans_moved=closing.loans_moved,
            holds_moved=closing.holds_moved,
            created_at=utc(closing.created_at),
            finished_at=None if closing.finished_at is None else utc(closing.finished_at),
        )


class ClosingPage(msgspec.Struct, kw_only=True):
    data: Annotated[list[ClosingRead], Meta(description="This page's closings, newest first.")]
    total: int
    limit: int
    offset: int


class PreviewDays(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    first_day: Annotated[date, Meta(description="The first UTC date closed: today or later.")]
    last_day: Annotated[date, Meta(description="The last UTC date closed.")]


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One proposed change: a new policy (`policy`), a policy replaced (`policy_id` and
    `policy`), a policy deleted (`policy_id` and `delete: true`), or an emergency closing
    (`closing`)."""

    policy_id: (
        Annotated[int, Meta(ge=1, le=2**63 - 1, description="The policy to replace or delete.")]
        | None
    ) = None
    policy: Annotated[
        PolicyWrite | None, Meta(description="The policy as it would be (new or replacing).")
    ] = None
    delete: Annotated[bool, Meta(description="true: `policy_id` would be deleted.")] = False
    closing: Annotated[
        PreviewDays | None, Meta(description="Days that would be closed at short notice.")
    ] = None


class Difference(msgspec.Struct, kw_only=True):
    what: Annotated[
        str,
        Meta(
            description="due_at, fine_if_returned_now, renewable, due_at_if_renewed, "
            "lost_after (loans); holds_allowed, pickup_by, hold_pickup_days (holds)."
        ),
    ]
    before: Annotated[str | None, Meta(description="As it is now.")]
    after: Annotated[str | None, Meta(description="As it would be after the change.")]


class PreviewExample(msgspec.Struct, kw_only=True):
    kind: Annotated[str, Meta(description="loan or hold.")]
    id: Annotated[int, Meta(description="The borrow's or hold's id.")]
    member_id: Annotated[int, Meta(description="Its member.")]
    book_id: Annotated[int, Meta(description="Its book.")]
    policy_before: Annotated[int, Meta(description="The policy that applies now.")]
    policy_after: Annotated[int, Meta(description="The policy that would apply.")]
    differences: Annotated[list[Difference], Meta(description="What would differ.")]


class PolicyPreview(msgspec.Struct, kw_only=True):
    """What the change would do to the loans out and the holds open now; nothing saved."""

    loans_out: Annotated[int, Meta(description="Active loans looked at.")]
    holds_open: Annotated[int, Meta(description="Waiting and ready holds looked at.")]
    loans_affected: Annotated[int, Meta(description="Loans with at least one difference.")] = 0
    holds_affected: Annotated[int, Meta(description="Holds with at least one difference.")] = 0
    differences: Annotated[
        dict[str, int], Meta(description="How many loans or holds differ in each respect.")
    ] = msgspec.field(default_factory=dict)
    examples: Annotated[
        list[PreviewExample], Meta(description="The first few affected, with what differs.")
    ] = msgspec.field(default_factory=list)
