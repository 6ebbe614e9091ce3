from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Identity, Integer, Numeric, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from books.db import Base


class Book(Base):
    """A catalog entry. Constraints live in the migration as CHECKs too."""

    __tablename__ = "books"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    image: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    # None: stock is not tracked and the book can always be ordered.
    stock: Mapped[int | None] = mapped_column(Integer)
    # Both None: the book is not lendable. Copies on loan: total - available.
    copies_total: Mapped[int | None] = mapped_column(Integer)
    copies_available: Mapped[int | None] = mapped_column(Integer)
    # The item type (`item_types.code`) orders' lending policies are matched on.
    format: Mapped[str] = mapped_column(Text, server_default="book")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ItemType(Base):
    """What kind of thing a book is (`book`, `reference`, `audiobook`, …)."""

    __tablename__ = "item_types"

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
