"""Lending policies: kept as data, every change audited, and one resolver that says which
policy applies to a member and a book, and why.

A policy is matched on (member category, item type), either side null for "any"; the most
specific match wins: both sides, then the category alone, then the item type alone, then
the default (any, any), which always exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from psycopg.errors import UniqueViolation
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orders.books_client import BooksClient
from orders.lending.errors import (
    DefaultPolicyKept,
    PolicyMatchTaken,
    PolicyNotFound,
    UnknownCategory,
    UnknownMember,
)
from orders.lending.loans import catalog_book
from orders.lending.models import Policy, PolicyAction, PolicyChange
from orders.lending.policy import PolicyResolver
from orders.lending.repository import MemberRepository
from orders.lending.rule_repository import PolicyChangeRepository, PolicyRepository
from orders.lending.rule_schemas import Candidate, PolicyRead, PolicyWrite, Resolution
from servicekit.api_keys import ApiKey
from servicekit.database import violates_foreign_key

CATEGORY_FKEY = "lending_policies_member_category_fkey"
MATCHES = ("category and item type", "category", "item type", "default")


@contextmanager
def known_category(data: PolicyWrite) -> Iterator[None]:
    """A policy naming a category that does not exist (or was deleted meanwhile) is a
    422: the foreign key decides."""
    try:
        yield
    except IntegrityError as exc:
        if violates_foreign_key(exc, CATEGORY_FKEY):
            raise UnknownCategory(str(data.member_category), field="member_category") from exc
        raise


def _snapshot(policy: Policy) -> dict[str, Any]:
    """A policy as the audit trail keeps it: as the API shows it."""
    return msgspec.to_builtins(PolicyRead.of(policy))  # type: ignore[no-any-return]


class PolicyService:
    def __init__(self, session: AsyncSession, *, books: BooksClient | None = None) -> None:
        """`books` is needed by `explain` alone (it looks the book up)."""
        self.session = session
        self.policies = PolicyRepository(session)
        self.changes = PolicyChangeRepository(session)
        self.members = MemberRepository(session)
        self.resolver = PolicyResolver(session)
        self.books = books

    async def list_policies(self) -> list[Policy]:
        return await self.policies.list()

    async def get(self, *, policy_id: int) -> Policy:
        policy = await self.policies.get(policy_id=policy_id)
        if policy is None:
            raise PolicyNotFound(policy_id)
        return policy

    async def create(self, *, data: PolicyWrite, by: ApiKey) -> Policy:
        with known_category(data):
            policy = await self.policies.add(data.values())
        if policy is None:
            raise PolicyMatchTaken(data.member_category, data.item_type)
        await self._audit(policy.id, PolicyAction.CREATED, by, before=None, after=policy)
        return policy

    async def replace(self, *, policy_id: int, data: PolicyWrite, by: ApiKey) -> Policy:
        """Replace a policy whole; the default keeps its match (any, any)."""
        current = await self.policies.get(policy_id=policy_id, lock=True)
        if current is None:
            raise PolicyNotFound(policy_id)
        if current.is_default and (data.member_category, data.item_type) != (None, None):
            raise DefaultPolicyKept(policy_id, "its match stays (any, any)")
        before = _snapshot(current)
        try:
            with known_category(data):
                async with self.session.begin_nested():
                    policy = await self.policies.replace(policy_id=policy_id, values=data.values())
        except IntegrityError as exc:
            if isinstance(exc.orig, UniqueViolation):
                raise PolicyMatchTaken(data.member_category, data.item_type) from exc
            raise
        assert policy is not None  # locked above
        await self._audit(policy_id, PolicyAction.UPDATED, by, before=before, after=policy)
        return policy

    async def delete(self, *, policy_id: int, by: ApiKey) -> None:
        current = await self.policies.get(policy_id=policy_id, lock=True)
        if current is None:
            raise PolicyNotFound(policy_id)
        before = _snapshot(current)
        if not await self.policies.delete(policy_id=policy_id):
            raise DefaultPolicyKept(policy_id, "it cannot be deleted")
        await self._audit(policy_id, PolicyAction.DELETED, by, before=before, after=None)

    async def history(
        self, *, policy_id: int | None, limit: int, offset: int
    ) -> tuple[list[PolicyChange], int]:
        found = await self.changes.list(policy_id=policy_id, limit=limit, offset=offset)
        return found, await self.changes.count(policy_id=policy_id)

    async def explain(self, *, member_id: int, book_id: int) -> Resolution:
        """Which policy applies to this member borrowing this book, and why."""
        member = await self.members.get(member_id=member_id)
        if member is None:
            raise UnknownMember(member_id, where="query")
        assert self.books is not None, "explain needs the books client"
        book = await catalog_book(self.books, book_id, where="query")
        found = await self.resolver.candidates(
            member_category=member.category, item_type=book.format
        )
        by_match = {(p.member_category, p.item_type): p for p in found}
        sides = [
            (member.category, book.format),
            (member.category, None),
            (None, book.format),
            (None, None),
        ]
        candidates = [
            Candidate(
                rank=rank,
                match=match,
                member_category=category,
                item_type=item_type,
                policy_id=policy.id if (policy := by_match.get((category, item_type))) else None,
            )
            for rank, (match, (category, item_type)) in enumerate(
                zip(MATCHES, sides, strict=True), start=1
            )
        ]
        applied = found[0]
        first = next(c for c in candidates if c.policy_id == applied.id)
        skipped = [c.match for c in candidates[: first.rank - 1]]
        reason = (
            f"Policy {applied.id} matches {first.match} "
            f"(member category {member.category!r}, item type {book.format!r})"
            + (f"; no policy for {', '.join(skipped)}." if skipped else ", the most specific.")
        )
        return Resolution(
            member_id=member.id,
            book_id=book.id,
            member_category=member.category,
            item_type=book.format,
            policy=PolicyRead.of(applied),
            candidates=candidates,
            reason=reason,
        )

    async def _audit(
        self,
        policy_id: int,
        action: PolicyAction,
        by: ApiKey,
        *,
        before: dict[str, Any] | None,
        after: Policy | None,
    ) -> None:
        await self.changes.record(
            policy_id=policy_id,
            action=action,
            api_key_id=by.id,
            api_key_prefix=by.prefix,
            before=before,
            after=None if after is None else _snapshot(after),
        )
