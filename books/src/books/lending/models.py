from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from books.db import Base


class LoanState(StrEnum):
    OUT = "out"
    IN = "in"
    PASSED = "passed"


class CopyLoan(Base):
    """The copy a reference (`borrow:12`, `hold:5`) took: still out, back on the shelf, or
    handed on to `passed_to` without touching the shelf."""

    __tablename__ = "copy_loans"

    reference: Mapped[str] = mapped_column(Text, primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id"))
    state: Mapped[str] = mapped_column(Text)
    passed_to: Mapped[str | None] = mapped_column(ForeignKey("copy_loans.reference"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
