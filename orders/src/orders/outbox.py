"""The transactional outbox: events written with the change they announce, relayed later."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Text, func
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from orders.db import Base
from servicekit.logs import current_request_id

ORDER_PLACED = "order.placed"


class OutboxEvent(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Carried into the job's metadata so worker logs join the request that caused them.
    request_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True), server_default=func.now()
    )
    delivered_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))


class Outbox:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *, topic: str, payload: dict[str, Any]) -> None:
        """Queue an event in the caller's transaction: it exists only if the change does."""
        self.session.add(OutboxEvent(topic=topic, payload=payload, request_id=current_request_id()))
        await self.session.flush()
