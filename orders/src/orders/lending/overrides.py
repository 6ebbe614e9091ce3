"""Staff overrides of blocks: a librarian may let one action (a borrow, a renewal, a hold,
a checkout from a hold) through a member's block, fines owed or loans overdue, with a
reason. The override is recorded in the action's transaction, so only an action that
happened leaves one; a member blocked by hand (status `blocked`) is not overridable: a
librarian sets the status back instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.errors import OverrideNotAllowed
from orders.lending.models import BlockOverride, OverrideAction
from orders.metrics import LIBRARY_BLOCK_OVERRIDES
from orders.problems import Rule
from servicekit.api_keys import LIBRARY_STAFF, ApiKey
from servicekit.database import after_commit


@dataclass
class Override:
    """A librarian's word that this one action may go through the member's block."""

    reason: str
    recorded_by: str
    # The block it let through, once the action met one (what a dry run reports).
    used_on: Rule | None = field(default=None)

    @classmethod
    def of(cls, reason: str | None, client: ApiKey) -> Override | None:
        """The override asked for with `override_reason`, if any: 403 unless staff."""
        if reason is None:
            return None
        if client.role not in LIBRARY_STAFF:
            raise OverrideNotAllowed()
        return cls(reason=reason.strip(), recorded_by=f"{client.role} key {client.prefix}")

    async def let_through(
        self, session: AsyncSession, *, member_id: int, action: OverrideAction, rule: Rule
    ) -> None:
        session.add(
            BlockOverride(
                member_id=member_id,
                action=action,
                rule=msgspec.to_builtins(rule),
                reason=self.reason,
                recorded_by=self.recorded_by,
            )
        )
        await session.flush()
        self.used_on = rule
        after_commit(session, partial(LIBRARY_BLOCK_OVERRIDES.labels(action, rule.name).inc))


class OverrideRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, *, member_id: int, limit: int, offset: int) -> list[BlockOverride]:
        statement = (
            select(BlockOverride)
            .where(BlockOverride.member_id == member_id)
            .order_by(BlockOverride.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list((await self.session.scalars(statement)).all())

    async def count(self, *, member_id: int) -> int:
        total = await self.session.scalar(
            select(func.count())
            .select_from(BlockOverride)
            .where(BlockOverride.member_id == member_id)
        )
        return int(total or 0)
