from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Computed, DateTime, ForeignKey, Identity, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from books.db import Base


class StockReservation(Base):
    """The outcome of the first reservation request for a reference."""

    __tablename__ = "stock_reservations"

    reference: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    shortages: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StockMovement(Base):
    """One change of a tracked book's stock. The database writes every one (migration
    0008's triggers on `books`), so the sum of a book's `delta` is its stock."""

    __tablename__ = "stock_movements"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    reference: Mapped[str | None] = mapped_column(ForeignKey("stock_reservations.reference"))
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id"))
    kind: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(Integer)
    delta: Mapped[int] = mapped_column(
        Integer,
        Computed(
            "CASE WHEN kind IN ('reserve', 'removal', 'untracked') THEN -quantity ELSE quantity END"
        ),
    )
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
