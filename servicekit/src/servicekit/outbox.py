"""Writing outbox events in the caller's transaction: an event exists only if its change does.

Every service's `outbox` table has the same shape (id, topic, payload, request_id,
traceparent, created_at, delivered_at); `servicekit.relay` delivers it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, MetaData, Table, Text, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.logs import current_request_id
from servicekit.tracing import current_traceparent

outbox_table = Table(
    "outbox",
    MetaData(),
    Column("topic", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("request_id", Text),
    Column("traceparent", Text),
)


async def add_event(session: AsyncSession, *, topic: str, payload: dict[str, Any]) -> None:
    """Queue an event for the relay; the request id and the trace context travel on into
    the job's metadata."""
    await session.execute(
        insert(outbox_table).values(
            topic=topic,
            payload=payload,
            request_id=current_request_id(),
            traceparent=current_traceparent(),
        )
    )
