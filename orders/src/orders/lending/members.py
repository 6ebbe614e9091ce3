"""Member rules: registration, changes, and when a member may be removed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.errors import EmailTaken, MemberHasLoans, MemberNotFound, UnknownCategory
from orders.lending.holds import HoldService
from orders.lending.models import BlockOverride, Member, MemberStatus
from orders.lending.overrides import OverrideRepository
from orders.lending.repository import MemberRepository
from orders.lending.schemas import MemberCreate, MemberUpdate
from servicekit.database import violates_foreign_key

CATEGORY_FKEY = "members_category_fkey"


@contextmanager
def known_category(code: object) -> Iterator[None]:
    """A member given a category that does not exist (or was deleted meanwhile) is a 422:
    the foreign key decides, so there is no check-then-write race."""
    try:
        yield
    except IntegrityError as exc:
        if violates_foreign_key(exc, CATEGORY_FKEY):
            raise UnknownCategory(str(code)) from exc
        raise


class MemberService:
    def __init__(self, session: AsyncSession, *, holds: HoldService) -> None:
        self.session = session
        self.members = MemberRepository(session)
        self.holds = holds

    async def register(self, *, data: MemberCreate) -> Member:
        values = {
            "name": data.name,
            "email": data.email,
            "status": data.status,
            "category": data.category,
            "max_loans": data.max_loans,
            "notice_delivery": data.notice_delivery,
        }
        with known_category(data.category):
            member = await self.members.add(values)
        if member is None:
            raise EmailTaken(data.email)
        return member

    async def overrides(
        self, *, member_id: int, limit: int, offset: int
    ) -> tuple[list[BlockOverride], int]:
        """A page of the overrides of the member's blocks, and how many there are: 404
        for an unknown member."""
        await self.get(member_id=member_id)
        overrides = OverrideRepository(self.session)
        found = await overrides.page(member_id=member_id, limit=limit, offset=offset)
        return found, await overrides.count(member_id=member_id)

    async def get(self, *, member_id: int) -> Member:
        member = await self.members.get(member_id=member_id)
        if member is None:
            raise MemberNotFound(member_id)
        return member

    async def list_members(
        self, *, limit: int, offset: int, status: MemberStatus | None, q: str | None
    ) -> tuple[list[Member], int]:
        members = await self.members.list(limit=limit, offset=offset, status=status, q=q)
        return members, await self.members.count(status=status, q=q)

    async def update(self, *, member_id: int, changes: MemberUpdate) -> Member:
        values = changes.changes()
        email = values.get("email")
        if isinstance(email, str) and await self.members.email_taken(
            email=email, other_than=member_id
        ):
            raise EmailTaken(email)
        try:
            with known_category(values.get("category")):
                async with self.session.begin_nested():
                    member = await self.members.update(member_id=member_id, values=values)
        except IntegrityError as exc:
            # Taken by a concurrent change since the check above.
            raise EmailTaken(str(email)) from exc
        if member is None:
            raise MemberNotFound(member_id)
        return member

    async def delete(self, *, member_id: int) -> None:
        """Soft-delete a member who has nothing out or requested (409 otherwise); their
        open holds are cancelled, and a copy set aside for one goes to the next in line."""
        if not await self.members.delete(member_id=member_id):
            member = await self.get(member_id=member_id)
            raise MemberHasLoans(member_id, member.loans_out)
        await self.holds.cancel_all_of(member_id=member_id)
