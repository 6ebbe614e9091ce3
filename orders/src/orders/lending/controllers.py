"""HTTP layer of lending: parse, call one service method, shape the response."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import Example
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from orders.http import (
    DocumentedOperation,
    IdempotencyKey,
    answer_response,
    json_body,
    paged,
    problem_responses,
)
from orders.lending.errors import BorrowNotFound, MemberNotFound
from orders.lending.holds import HoldService
from orders.lending.ledger import LedgerService
from orders.lending.library import LibraryService
from orders.lending.loans import LoanService
from orders.lending.members import MemberService
from orders.lending.models import Hold, HoldStatus, LedgerKind, MemberStatus
from orders.lending.overrides import Override
from orders.lending.reads import BorrowReads
from orders.lending.schemas import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    BorrowCreate,
    BorrowListStatus,
    BorrowPage,
    BorrowRead,
    CreditCreate,
    DailyLoans,
    DryRunRead,
    HoldCreate,
    HoldPage,
    HoldQueue,
    HoldRead,
    HoldSuspend,
    LedgerEntryRead,
    LedgerPage,
    LibrarySummary,
    MemberCreate,
    MemberPage,
    MemberRead,
    MemberUpdate,
    OverridePage,
    OverrideRead,
    PopularBook,
    QueueOrder,
    TopMember,
)
from orders.ordering.schemas import MAX_ID, money
from orders.security import BEARER, caller, requires
from servicekit.api_keys import BORROWING, LIBRARY_STAFF, Role

ADMIN = frozenset({Role.ADMIN})

MemberIdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="Member id.")]
BorrowIdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="Borrow id.")]
HoldIdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="Hold id.")]
BookIdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="Book id.")]
Limit = Annotated[
    int, QueryParameter(ge=1, description=f"Page size; values above {MAX_PAGE_SIZE} are capped.")
]
Offset = Annotated[int, QueryParameter(ge=0, le=2**31 - 1, description="Items to skip.")]
MemberFilter = Annotated[
    int | None, QueryParameter(ge=1, le=MAX_ID, description="Only this member's.")
]
BookFilter = Annotated[int | None, QueryParameter(ge=1, le=MAX_ID, description="Only this book's.")]
Days = Annotated[int, QueryParameter(ge=1, le=3650, description="The window: the last N days.")]
Days366 = Annotated[
    int, QueryParameter(ge=1, le=366, description="The window: the last N days, today included.")
]
TopLimit = Annotated[int, QueryParameter(ge=1, le=100, description="How many to list.")]
DryRun = Annotated[
    bool,
    QueryParameter(
        description="true: answer what the action would do (200, `DryRunRead`), or the "
        "refusal it would meet, and record nothing."
    ),
]

OverrideReason = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=200,
        pattern=r"^(?=.*\S)[^\x00]*$",
        description="Staff only (403 `OVERRIDE_NOT_ALLOWED` otherwise): let this one "
        "action through the member's block (fines owed above `max_balance`, loans overdue "
        "above `max_overdue_loans`), recording this reason; see "
        "`GET /v1/members/{id}/overrides`. Other refusals still apply.",
        examples=[Example(value="Paid in full by phone; payment on its way")],
    ),
]

PAGE_HEADERS = [
    ResponseHeader(name="X-Total-Count", description="Items matching.", documentation_only=True),
    ResponseHeader(
        name="Link",
        description="RFC 8288 first/prev/next/last page links.",
        documentation_only=True,
    ),
]
LOCATION = [
    ResponseHeader(name="Location", description="URL of the new resource.", documentation_only=True)
]


def provide_holds(session: NamedDependency[AsyncSession], state: State) -> HoldService:
    return HoldService(
        session,
        books=state.books_client,
        buy_instead_after=timedelta(days=state.settings.buy_instead_after_days),
    )


def provide_loans(session: NamedDependency[AsyncSession], state: State) -> LoanService:
    return LoanService(
        session,
        books=state.books_client,
        idempotency_store=state.idempotency_store,
    )


def provide_members(
    session: NamedDependency[AsyncSession], holds: NamedDependency[HoldService], state: State
) -> MemberService:
    return MemberService(session, holds=holds)


def provide_library(
    session: NamedDependency[AsyncSession], holds: NamedDependency[HoldService], state: State
) -> LibraryService:
    return LibraryService(
        session, holds=holds, due_soon=timedelta(days=state.settings.due_soon_days)
    )


async def provide_borrow_reads(state: State) -> BorrowReads:
    return BorrowReads(state.reads)


def provide_ledger(session: NamedDependency[AsyncSession], state: State) -> LedgerService:
    return LedgerService(session, idempotency_store=state.idempotency_store)


LENDING_DEPENDENCIES = {
    "ledger": Provide(provide_ledger, sync_to_thread=False),
    "holds": Provide(provide_holds, sync_to_thread=False),
    "loans": Provide(provide_loans, sync_to_thread=False),
    "members": Provide(provide_members, sync_to_thread=False),
    "library": Provide(provide_library, sync_to_thread=False),
    "reads": Provide(provide_borrow_reads),
}


class MemberController(Controller):
    path = "/v1/members"
    tags = ["members"]
    dependencies = LENDING_DEPENDENCIES
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @post(
        "",
        guards=[json_body(MemberCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(409, 415, 422),
        response_headers=LOCATION,
    )
    async def register_member(
        self, data: JSONBody[MemberCreate], members: NamedDependency[MemberService]
    ) -> Response[MemberRead]:
        """Register a library member.

        `category` (default `adult`) sets the member's loan limit and block thresholds;
        `max_loans`, when given, is the member's own limit instead of the category's. An
        email already used by another member, in any letter case, is a 409; an unknown
        category a 422.
        """
        member = await members.register(data=data)
        return Response(
            MemberRead.of(member), status_code=201, headers={"Location": f"{self.path}/{member.id}"}
        )

    @get(
        "",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=PAGE_HEADERS,
    )
    async def list_members(
        self,
        request: Request[Any, Any, Any],
        members: NamedDependency[MemberService],
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
        status: Annotated[
            MemberStatus | None, QueryParameter(description="Only this status.")
        ] = None,
        q: Annotated[
            str | None,
            QueryParameter(
                min_length=1,
                max_length=200,
                pattern=r"^[^\x00]+$",
                description="Members whose email is this (any case) or whose name contains it.",
            ),
        ] = None,
    ) -> Response[MemberPage]:
        """List members, newest first."""
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await members.list_members(limit=limit, offset=offset, status=status, q=q)
        page = MemberPage(
            data=[MemberRead.of(m) for m in found], total=total, limit=limit, offset=offset
        )
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/{member_id:str}",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
    )
    async def get_member(
        self, members: NamedDependency[MemberService], member_id: MemberIdPath
    ) -> MemberRead:
        """Fetch one member, with the loans they have out or requested."""
        return MemberRead.of(await members.get(member_id=member_id))

    @patch(
        "/{member_id:str}",
        guards=[json_body(MemberUpdate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 415, 422),
    )
    async def update_member(
        self,
        data: JSONBody[MemberUpdate],
        members: NamedDependency[MemberService],
        member_id: MemberIdPath,
    ) -> MemberRead:
        """Change some fields of a member; block or unblock them with `status`.

        Lowering `max_loans` below the loans out refuses new borrows until enough return;
        `max_loans: null` lets the member's category set the limit again.
        """
        return MemberRead.of(await members.update(member_id=member_id, changes=data))

    @delete(
        "/{member_id:str}",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 422),
    )
    async def delete_member(
        self, members: NamedDependency[MemberService], member_id: MemberIdPath
    ) -> None:
        """Remove a member (soft delete); refused (409) while they have loans out or requested.

        Their open holds are cancelled; their history stays.
        """
        await members.delete(member_id=member_id)

    @get(
        "/{member_id:str}/borrows",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
        response_headers=PAGE_HEADERS,
    )
    async def member_history(
        self,
        request: Request[Any, Any, Any],
        reads: NamedDependency[BorrowReads],
        member_id: MemberIdPath,
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
    ) -> Response[BorrowPage]:
        """A member's borrows, newest first (their lending history)."""
        limit = min(limit, MAX_PAGE_SIZE)
        history = await reads.member_page(member_id=member_id, limit=limit, offset=offset)
        if history is None:
            raise MemberNotFound(member_id)
        found, total = history
        page = BorrowPage(data=found, total=total, limit=limit, offset=offset)
        return paged(request, page, total=total, limit=limit, offset=offset)


class LedgerController(Controller):
    path = "/v1/members/{member_id:str}"
    tags = ["members"]
    dependencies = LENDING_DEPENDENCIES
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @get(
        "/ledger",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
        response_headers=PAGE_HEADERS,
    )
    async def member_ledger(
        self,
        request: Request[Any, Any, Any],
        ledger: NamedDependency[LedgerService],
        member_id: MemberIdPath,
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
    ) -> Response[LedgerPage]:
        """A member's account: their fines, payments and waivers, newest first.

        Each entry shows the balance it left; `balance` is what the member owes now,
        always the sum of the whole ledger. Entries are never changed or removed.
        """
        limit = min(limit, MAX_PAGE_SIZE)
        member, entries, total = await ledger.statement(
            member_id=member_id, limit=limit, offset=offset
        )
        page = LedgerPage(
            data=[LedgerEntryRead.of(entry, balance_after=after) for entry, after in entries],
            balance=money(member.balance),
            total=total,
            limit=limit,
            offset=offset,
        )
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/overrides",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
        response_headers=PAGE_HEADERS,
    )
    async def member_overrides(
        self,
        request: Request[Any, Any, Any],
        members: NamedDependency[MemberService],
        member_id: MemberIdPath,
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
    ) -> Response[OverridePage]:
        """The actions librarians let through the member's blocks, newest first: which
        action, the block's rule as it stood, the reason and the key that recorded it."""
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await members.overrides(member_id=member_id, limit=limit, offset=offset)
        page = OverridePage(
            data=[OverrideRead.of(o) for o in found], total=total, limit=limit, offset=offset
        )
        return paged(request, page, total=total, limit=limit, offset=offset)

    @post(
        "/payments",
        guards=[json_body(CreditCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 415, 422),
        response_description="The payment's ledger entry (negative: a credit), recorded now "
        "or earlier under the same Idempotency-Key.",
    )
    async def record_payment(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreditCreate],
        ledger: NamedDependency[LedgerService],
        member_id: MemberIdPath,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[LedgerEntryRead]:
        """Record money a member paid towards what they owe.

        At most the balance (409 names it): two desks taking the same debt at once
        cannot both record it. Send an `Idempotency-Key` so that a retry records it once.
        """
        answer = await ledger.credit(
            member_id=member_id,
            kind=LedgerKind.PAYMENT,
            data=data,
            idempotency_key=idempotency_key,
            client=caller(request),
        )
        return cast("Response[LedgerEntryRead]", answer_response(answer))

    @post(
        "/waivers",
        guards=[json_body(CreditCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 415, 422),
        response_description="The waiver's ledger entry (negative: a credit), recorded now "
        "or earlier under the same Idempotency-Key.",
    )
    async def record_waiver(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreditCreate],
        ledger: NamedDependency[LedgerService],
        member_id: MemberIdPath,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[LedgerEntryRead]:
        """Forgive part or all of what a member owes, with the reason on their statement.

        The same rules as a payment: at most the balance, once per Idempotency-Key.
        """
        answer = await ledger.credit(
            member_id=member_id,
            kind=LedgerKind.WAIVER,
            data=data,
            idempotency_key=idempotency_key,
            client=caller(request),
        )
        return cast("Response[LedgerEntryRead]", answer_response(answer))


class BorrowController(Controller):
    path = "/v1/borrows"
    tags = ["borrows"]
    dependencies = LENDING_DEPENDENCIES
    guards = [requires(BORROWING)]
    security = BEARER

    @post(
        "",
        guards=[json_body(BorrowCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(403, 409, 415, 422, 502),
        response_description="The borrow request, placed now or earlier under the same "
        "Idempotency-Key; `pending` until a worker checks a copy out.",
        response_headers=LOCATION,
    )
    async def request_borrow(
        self,
        request: Request,  # type: ignore[type-arg]
        data: JSONBody[BorrowCreate],
        loans: NamedDependency[LoanService],
        idempotency_key: IdempotencyKey = None,
        dry_run: DryRun = False,
        override_reason: OverrideReason = None,
    ) -> Response[BorrowRead | DryRunRead]:
        """Borrow a copy of a book for a member.

        Answers at once with a `pending` borrow; a worker then checks a copy out and the
        loan becomes `active` with its `due_at`, or, when no copy is free, `held`: the
        member is queued for the book (`hold_id`). Refused at once, with nothing
        recorded: unknown member or book (422), member blocked (403), member at their
        loan limit, the book already out to this member, or a book without lendable
        copies (409). With `dry_run=true`: what would happen (the policy, the due date if
        a copy is free), the same refusals, nothing recorded and no key claimed. With
        `override_reason` (staff): through a block, the override recorded.
        """
        override = Override.of(override_reason, caller(request))
        if dry_run:
            return Response(await loans.try_request(data=data, override=override), status_code=200)
        answer = await loans.request(
            data=data, idempotency_key=idempotency_key, client=caller(request), override=override
        )
        # The stored bytes are the encoded BorrowRead: a replay sends them unchanged.
        return cast("Response[BorrowRead | DryRunRead]", answer_response(answer))

    @get(
        "",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=PAGE_HEADERS,
    )
    async def list_borrows(
        self,
        request: Request[Any, Any, Any],
        reads: NamedDependency[BorrowReads],
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
        status: Annotated[
            BorrowListStatus | None,
            QueryParameter(description="Only this status; `overdue` = active and past due."),
        ] = None,
        member_id: MemberFilter = None,
        book_id: BookFilter = None,
    ) -> Response[BorrowPage]:
        """List borrows, newest first (`status=overdue`: longest overdue first)."""
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await reads.page(
            limit=limit, offset=offset, status=status, member_id=member_id, book_id=book_id
        )
        page = BorrowPage(data=found, total=total, limit=limit, offset=offset)
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/{borrow_id:str}",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
    )
    async def get_borrow(
        self, reads: NamedDependency[BorrowReads], borrow_id: BorrowIdPath
    ) -> BorrowRead:
        """Fetch one borrow."""
        borrow = await reads.borrow(borrow_id=borrow_id)
        if borrow is None:
            raise BorrowNotFound(borrow_id)
        return borrow

    @post(
        "/{borrow_id:str}/return",
        status_code=200,
        # The copy comes back to the desk: staff record it, not a shop.
        guards=[requires(LIBRARY_STAFF)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 422),
        response_description="The returned loan, with its late fee.",
    )
    async def return_borrow(
        self, loans: NamedDependency[LoanService], borrow_id: BorrowIdPath, dry_run: DryRun = False
    ) -> BorrowRead | DryRunRead:
        """Return a borrowed copy.

        A late return records a `late_fee` (per day late, capped). The copy goes to the
        first member waiting for the book, or back on the shelf. Returning again answers
        the same loan and changes nothing; a loan not yet active is a 409. With
        `dry_run=true`: the fine a return now would record, nothing recorded.
        """
        if dry_run:
            return await loans.try_give_back(borrow_id=borrow_id)
        borrow = await loans.give_back(borrow_id=borrow_id)
        return BorrowRead.of(borrow, now=loans.now())

    @post(
        "/{borrow_id:str}/renew",
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(403, 404, 409, 422),
        response_description="The loan with its new due date.",
    )
    async def renew_borrow(
        self,
        request: Request[Any, Any, Any],
        loans: NamedDependency[LoanService],
        borrow_id: BorrowIdPath,
        dry_run: DryRun = False,
        override_reason: OverrideReason = None,
    ) -> BorrowRead | DryRunRead:
        """Renew a loan: its due date moves one loan period later.

        Refused (409, the reason named) past the renewal limit, when the loan is overdue
        beyond the grace period, or when another member is waiting for the book; 403 when
        the member is blocked. Each refusal's `rule` names the policy, the limit and where
        the loan stands. With `dry_run=true`: the new due date, nothing recorded. With
        `override_reason` (staff): through a block, the override recorded.
        """
        override = Override.of(override_reason, caller(request))
        if dry_run:
            return await loans.try_renew(borrow_id=borrow_id, override=override)
        borrow = await loans.renew(borrow_id=borrow_id, override=override)
        return BorrowRead.of(borrow, now=loans.now())


class HoldController(Controller):
    path = "/v1/holds"
    tags = ["holds"]
    dependencies = LENDING_DEPENDENCIES
    guards = [requires(BORROWING)]
    security = BEARER

    @post(
        "",
        guards=[json_body(HoldCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(403, 409, 415, 422, 502),
        response_headers=LOCATION,
    )
    async def place_hold(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[HoldCreate],
        holds: NamedDependency[HoldService],
        dry_run: DryRun = False,
        override_reason: OverrideReason = None,
    ) -> Response[HoldRead | DryRunRead]:
        """Queue a member for a book (first come, first served).

        When a copy is on the shelf it is set aside at once; otherwise the next returned
        copy goes to the first hold in line. A ready hold waits for pickup until
        `pickup_by`. Refused: unknown member or book (422), member blocked (403), book
        not lendable, holds not allowed by the policy, the member already holds it or has
        it out (409). With `dry_run=true`: the place in the queue, nothing recorded. With
        `override_reason` (staff): through a block, the override recorded.
        """
        override = Override.of(override_reason, caller(request))
        if dry_run:
            preview = await holds.try_place(
                member_id=data.member_id, book_id=data.book_id, override=override
            )
            return Response(preview, status_code=200)
        hold = await holds.place(member_id=data.member_id, book_id=data.book_id, override=override)
        body = HoldRead.of(hold, outlook=await holds.outlook(hold))
        return Response(body, status_code=201, headers={"Location": f"{self.path}/{hold.id}"})

    @get(
        "",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=PAGE_HEADERS,
    )
    async def list_holds(
        self,
        request: Request[Any, Any, Any],
        holds: NamedDependency[HoldService],
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
        status: Annotated[
            HoldStatus | None, QueryParameter(description="Only this status.")
        ] = None,
        member_id: MemberFilter = None,
        book_id: BookFilter = None,
    ) -> Response[HoldPage]:
        """List holds, newest first."""
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await holds.list_holds(
            limit=limit, offset=offset, status=status, member_id=member_id, book_id=book_id
        )
        data = [HoldRead.of(h, outlook=await holds.outlook(h)) for h in found]
        page = HoldPage(data=data, total=total, limit=limit, offset=offset)
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/{hold_id:str}", operation_class=DocumentedOperation, responses=problem_responses(404, 422)
    )
    async def get_hold(self, holds: NamedDependency[HoldService], hold_id: HoldIdPath) -> HoldRead:
        """Fetch one hold with its place in the queue."""
        hold = await holds.get(hold_id=hold_id)
        return HoldRead.of(hold, outlook=await holds.outlook(hold))

    @delete(
        "/{hold_id:str}",
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 422),
        response_description="The cancelled hold.",
    )
    async def cancel_hold(
        self, holds: NamedDependency[HoldService], hold_id: HoldIdPath
    ) -> HoldRead:
        """Cancel a waiting or ready hold; a copy set aside goes to the next in line.

        Cancelling again answers the same hold; a fulfilled or expired one is a 409.
        """
        return HoldRead.of(await holds.cancel(hold_id=hold_id))

    @post(
        "/{hold_id:str}/suspend",
        status_code=200,
        guards=[json_body(HoldSuspend)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 415, 422),
        response_description="The suspended hold, with the place it keeps.",
    )
    async def suspend_hold(
        self,
        data: JSONBody[HoldSuspend],
        holds: NamedDependency[HoldService],
        hold_id: HoldIdPath,
    ) -> HoldRead:
        """Suspend a waiting hold (away, or not ready to read it yet); `{}` for no end date.

        The hold keeps its place in the queue, but the copies that come back pass it by
        and go to the next waiting hold, until it is resumed: by `POST
        /v1/holds/{id}/resume`, or by itself on `until` (a UTC date after today). Suspending
        it again sets a new `until`. A hold not in the queue (ready, fulfilled, cancelled,
        expired) is a 409 `HOLD_NOT_SUSPENDABLE`.
        """
        hold = await holds.suspend(hold_id=hold_id, until=data.until)
        return HoldRead.of(hold, outlook=await holds.outlook(hold))

    @post(
        "/{hold_id:str}/resume",
        status_code=200,
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 422),
        response_description="The hold, waiting again in the place it kept.",
    )
    async def resume_hold(
        self, holds: NamedDependency[HoldService], hold_id: HoldIdPath
    ) -> HoldRead:
        """Resume a suspended hold: it waits again in the place it kept.

        A copy on the shelf is set aside for it at once if it is first in line. Resuming a
        waiting hold answers it as it is; a hold not in the queue is a 409
        `HOLD_NOT_SUSPENDED`.
        """
        hold = await holds.resume(hold_id=hold_id)
        return HoldRead.of(hold, outlook=await holds.outlook(hold))

    @get(
        "/queues/{book_id:str}",
        guards=[requires(LIBRARY_STAFF)],
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
    )
    async def hold_queue(
        self, holds: NamedDependency[HoldService], book_id: BookIdPath
    ) -> HoldQueue:
        """A book's queue in the order copies go to it: waiting and suspended holds."""
        return await self._queue(holds, book_id, await holds.queue(book_id=book_id))

    @put(
        "/queues/{book_id:str}",
        guards=[requires(ADMIN), json_body(QueueOrder)],
        operation_class=DocumentedOperation,
        responses=problem_responses(409, 415, 422),
        response_description="The book's queue in its new order.",
    )
    async def reorder_queue(
        self, data: JSONBody[QueueOrder], holds: NamedDependency[HoldService], book_id: BookIdPath
    ) -> HoldQueue:
        """Put a book's queue in a new order (staff: a member's special need, a mistake).

        Send every hold of the queue (`GET` it first), each once, in the new order: the
        copies that come back, the positions and the wait estimates follow it; holds
        placed later still queue behind. A list that is not exactly the queue now (a hold
        placed, readied, cancelled or reordered since) is a 409 `QUEUE_CHANGED` and
        changes nothing; the same order sent again changes nothing.
        """
        queue = await holds.reorder(book_id=book_id, hold_ids=data.hold_ids)
        return await self._queue(holds, book_id, queue)

    @staticmethod
    async def _queue(holds: HoldService, book_id: int, queue: list[Hold]) -> HoldQueue:
        data = [HoldRead.of(hold, outlook=await holds.outlook(hold)) for hold in queue]
        return HoldQueue(book_id=book_id, data=data)

    @post(
        "/{hold_id:str}/checkout",
        # The copy is handed over at the desk: staff record it, not a shop.
        guards=[requires(LIBRARY_STAFF)],
        operation_class=DocumentedOperation,
        responses=problem_responses(403, 404, 409, 422),
        response_description="The loan, active at once (201; 200 when checked out before).",
        response_headers=LOCATION,
    )
    async def check_out_hold(
        self,
        request: Request[Any, Any, Any],
        holds: NamedDependency[HoldService],
        loans: NamedDependency[LoanService],
        hold_id: HoldIdPath,
        dry_run: DryRun = False,
        override_reason: OverrideReason = None,
    ) -> Response[BorrowRead | DryRunRead]:
        """Borrow the copy set aside for a ready hold.

        Refused (409) unless the hold is ready, or when the member is at a loan limit;
        403 when the member is blocked. With `dry_run=true`: the due date the loan would
        get, nothing recorded. With `override_reason`: through a block, the override
        recorded.
        """
        override = Override.of(override_reason, caller(request))
        if dry_run:
            preview = await holds.try_check_out(hold_id=hold_id, override=override)
            return Response(preview, status_code=200)
        borrow, created = await holds.check_out(hold_id=hold_id, override=override)
        body = BorrowRead.of(borrow, now=loans.now())
        return Response(
            body,
            status_code=201 if created else 200,
            headers={"Location": f"{BorrowController.path}/{borrow.id}"},
        )


class LibraryController(Controller):
    path = "/v1/library"
    tags = ["library"]
    dependencies = LENDING_DEPENDENCIES
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @get("/summary", operation_class=DocumentedOperation, responses=problem_responses())
    async def library_summary(self, library: NamedDependency[LibraryService]) -> LibrarySummary:
        """Loans out, overdue, holds waiting and ready, members and how many borrow."""
        return await library.summary()

    @get("/popular", operation_class=DocumentedOperation, responses=problem_responses(422))
    async def popular_books(
        self, library: NamedDependency[LibraryService], days: Days = 30, limit: TopLimit = 10
    ) -> list[PopularBook]:
        """The most borrowed books in the last `days` days."""
        return await library.popular(days=days, limit=limit)

    @get("/daily", operation_class=DocumentedOperation, responses=problem_responses(422))
    async def daily_loans(
        self, library: NamedDependency[LibraryService], days: Days366 = 30
    ) -> list[DailyLoans]:
        """Loans made on each of the last `days` UTC days, oldest first, today last."""
        return await library.daily(days=days)

    @get("/members/top", operation_class=DocumentedOperation, responses=problem_responses(422))
    async def top_members(
        self, library: NamedDependency[LibraryService], days: Days = 30, limit: TopLimit = 10
    ) -> list[TopMember]:
        """The members who borrowed most in the last `days` days."""
        return await library.top_members(days=days, limit=limit)
