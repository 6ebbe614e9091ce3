"""What a policy or calendar change would do to the loans and holds out now, asked before
it is saved (`POST /v1/policies/preview`).

The change is made for real — by the very code that would make it, with its checks and
its refusals — in a savepoint that is then rolled back. Before and inside it, one
statement reads every active loan and open hold with the policy that applies to it
(`policy_match`, the resolver's own statement, as a lateral join); the two readings are
compared loan by loan with the rules of `LendingPolicy`, so a preview can never disagree
with what the change then does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import SQLColumnExpression, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from orders.lending.closed_days import CalendarService
from orders.lending.errors import InvalidChange
from orders.lending.models import Borrow, BorrowStatus, ClosingStatus, Hold, Policy
from orders.lending.policies import PolicyService
from orders.lending.policy import LendingPolicy
from orders.lending.repository import OPEN_HOLD, category_of, policy_match
from orders.lending.rule_repository import ClosedDayRepository
from orders.lending.rule_schemas import (
    ClosingCreate,
    Difference,
    PolicyPreview,
    PreviewExample,
    PreviewRequest,
)
from orders.ordering.schemas import money
from servicekit.api_keys import ApiKey
from servicekit.database import rolled_back

EXAMPLES = 5


@dataclass(frozen=True)
class LoanState:
    member_id: int
    book_id: int
    due_at: datetime
    renewals: int
    book_price: Decimal | None
    policy: LendingPolicy


@dataclass(frozen=True)
class HoldState:
    member_id: int
    book_id: int
    pickup_by: datetime | None
    policy: LendingPolicy


def _applying(member_id: SQLColumnExpression[int], item_type: SQLColumnExpression[str]) -> Any:
    """The id of the policy that applies to each row of a statement over loans or holds,
    as a lateral subquery (`policy_id`)."""
    match = policy_match(category_of(member_id), item_type)
    return match.with_only_columns(Policy.id.label("policy_id")).limit(1).lateral()


class PolicyPreviewer:
    def __init__(self, session: AsyncSession, *, policies: PolicyService) -> None:
        self.session = session
        self.policies = policies
        self.calendar = CalendarService(session)
        self.closed_days = ClosedDayRepository(session)

    async def preview(self, *, data: PreviewRequest, by: ApiKey) -> PolicyPreview:
        _check_one_change(data)
        now = datetime.now(UTC)
        loans_before, holds_before = await self._loans(), await self._holds()
        async with rolled_back(self.session):
            await self._apply(data, by)
            loans_after, holds_after = await self._loans(), await self._holds()
            closed = await self.closed_days.between(
                first=min((s.due_at for s in loans_before.values()), default=now)
                .astimezone(UTC)
                .date(),
                last=now.date(),
            )
        preview = PolicyPreview(loans_out=len(loans_before), holds_open=len(holds_before))
        for borrow_id, before in loans_before.items():
            after = loans_after[borrow_id]
            differences = _loan_differences(before, after, now, closed)
            _count(preview, "loan", borrow_id, before, after, differences)
        for hold_id, was in holds_before.items():
            would_be = holds_after[hold_id]
            _count(preview, "hold", hold_id, was, would_be, _hold_differences(was, would_be))
        return preview

    async def _apply(self, data: PreviewRequest, by: ApiKey) -> None:
        if data.closing is not None:
            closing = await self.calendar.close_at_short_notice(
                data=ClosingCreate(
                    first_day=data.closing.first_day,
                    last_day=data.closing.last_day,
                    reason="preview",
                )
            )
            moved = await self.calendar.move_batch(closing_id=closing.id)
            while moved.status is not ClosingStatus.DONE:
                moved = await self.calendar.move_batch(closing_id=closing.id)
        elif data.delete:
            assert data.policy_id is not None
            await self.policies.delete(policy_id=data.policy_id, by=by)
        elif data.policy_id is not None:
            assert data.policy is not None
            await self.policies.replace(policy_id=data.policy_id, data=data.policy, by=by)
        else:
            assert data.policy is not None
            await self.policies.create(data=data.policy, by=by)

    async def _policies(self) -> dict[int, LendingPolicy]:
        """Every policy as it stands now (a few rows)."""
        rows = await self.session.scalars(select(Policy).execution_options(populate_existing=True))
        return {row.id: LendingPolicy.of(row) for row in rows}

    async def _loans(self) -> dict[int, LoanState]:
        policies = await self._policies()
        applying = _applying(Borrow.member_id, Borrow.item_type)
        statement = (
            select(
                Borrow.id,
                Borrow.member_id,
                Borrow.book_id,
                Borrow.due_at,
                Borrow.renewals,
                Borrow.book_price,
                applying,
            )
            .join(applying, true())
            .where(Borrow.status == BorrowStatus.ACTIVE)
        )
        return {
            row.id: LoanState(
                member_id=row.member_id,
                book_id=row.book_id,
                due_at=row.due_at,
                renewals=row.renewals,
                book_price=row.book_price,
                policy=policies[row.policy_id],
            )
            for row in await self.session.execute(statement)
        }

    async def _holds(self) -> dict[int, HoldState]:
        policies = await self._policies()
        applying = _applying(Hold.member_id, Hold.item_type)
        statement = (
            select(Hold.id, Hold.member_id, Hold.book_id, Hold.pickup_by, applying)
            .join(applying, true())
            .where(Hold.status.in_(OPEN_HOLD))
        )
        return {
            row.id: HoldState(
                member_id=row.member_id,
                book_id=row.book_id,
                pickup_by=row.pickup_by,
                policy=policies[row.policy_id],
            )
            for row in await self.session.execute(statement)
        }


def _check_one_change(data: PreviewRequest) -> None:
    """422 unless the request proposes exactly one change."""
    if data.closing is not None:
        if data.policy is not None or data.policy_id is not None or data.delete:
            raise InvalidChange(
                "Preview a closing or a policy change, not both: send `closing` alone.",
                field="closing",
                message="alone",
            )
        return
    if data.delete and (data.policy_id is None or data.policy is not None):
        raise InvalidChange(
            "To preview deleting a policy, send its `policy_id` and `delete: true`, no `policy`.",
            field="policy_id",
            message="the policy to delete",
        )
    if not data.delete and data.policy is None:
        raise InvalidChange(
            "Send the change to preview: `policy` (new), `policy_id` and `policy` "
            "(replaced), `policy_id` and `delete: true`, or `closing`.",
            field="policy",
            message="the proposed policy",
        )


def _count(
    preview: PolicyPreview,
    kind: str,
    subject_id: int,
    before: LoanState | HoldState,
    after: LoanState | HoldState,
    differences: list[Difference],
) -> None:
    if not differences:
        return
    if kind == "loan":
        preview.loans_affected += 1
    else:
        preview.holds_affected += 1
    for difference in differences:
        preview.differences[difference.what] = preview.differences.get(difference.what, 0) + 1
    if len(preview.examples) < EXAMPLES:
        preview.examples.append(
            PreviewExample(
                kind=kind,
                id=subject_id,
                member_id=before.member_id,
                book_id=before.book_id,
                policy_before=before.policy.id,
                policy_after=after.policy.id,
                differences=differences,
            )
        )


def _loan_differences(
    before: LoanState, after: LoanState, now: datetime, closed: set[date]
) -> list[Difference]:
    """What would differ for one loan out: its due date, the fine if it came back now,
    its next renewal, when it would be lost."""
    differences: list[Difference] = []

    def differs(what: str, was: object, would_be: object) -> None:
        if was != would_be:
            differences.append(Difference(what=what, before=_text(was), after=_text(would_be)))

    differs("due_at", before.due_at, after.due_at)
    fine = [
        state.policy.late_fee(
            due_at=state.due_at, returned_at=now, book_price=state.book_price, closed_days=closed
        )
        for state in (before, after)
    ]
    differs("fine_if_returned_now", money(fine[0]), money(fine[1]))
    renewable = [state.renewals < state.policy.max_renewals for state in (before, after)]
    differs("renewable", renewable[0], renewable[1])
    if all(renewable):
        differs(
            "due_at_if_renewed",
            before.due_at + before.policy.loan_period,
            after.due_at + after.policy.loan_period,
        )
    differs(
        "lost_after",
        _lost_at(before),
        _lost_at(after),
    )
    return differences


def _lost_at(state: LoanState) -> datetime | None:
    return None if state.policy.lost_after is None else state.due_at + state.policy.lost_after


def _hold_differences(before: HoldState, after: HoldState) -> list[Difference]:
    differences: list[Difference] = []
    pairs: list[tuple[str, object, object]] = [
        ("holds_allowed", before.policy.holds_allowed, after.policy.holds_allowed),
        ("pickup_by", before.pickup_by, after.pickup_by),
        ("hold_pickup_days", before.policy.hold_pickup.days, after.policy.hold_pickup.days),
    ]
    for what, was, would_be in pairs:
        if was != would_be:
            differences.append(Difference(what=what, before=_text(was), after=_text(would_be)))
    return differences


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.days} days"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
