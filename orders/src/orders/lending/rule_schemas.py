"""Wire formats of the circulation rules: member categories and lending policies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from orders.lending.models import MemberCategory
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


class CategoryCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    name: Label
    max_loans: CategoryMaxLoans
    max_balance: Annotated[
        AmountIn, Meta(description="Fines owed above this will block the member.")
    ] = "10.00"
    max_overdue_loans: MaxOverdue = 0

    def values(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name.strip(),
            "max_loans": self.max_loans,
            "max_balance": Decimal(self.max_balance),
            "max_overdue_loans": self.max_overdue_loans,
        }


class CategoryUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Partial update: only the fields sent change."""

    name: Label | UnsetType = UNSET
    max_loans: CategoryMaxLoans | UnsetType = UNSET
    max_balance: AmountIn | UnsetType = UNSET
    max_overdue_loans: MaxOverdue | UnsetType = UNSET

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
            created_at=utc(category.created_at),
            updated_at=utc(category.updated_at),
        )
