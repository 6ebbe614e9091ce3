"""HTTP layer of the circulation rules: member categories and lending policies."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from orders.http import DocumentedOperation, json_body, paged, problem_responses
from orders.lending.categories import CategoryService
from orders.lending.closed_days import CalendarService
from orders.lending.controllers import ADMIN, LOCATION, PAGE_HEADERS, Limit, Offset
from orders.lending.policies import PolicyService
from orders.lending.preview import PolicyPreviewer
from orders.lending.rule_schemas import (
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    ClosedDayCreate,
    ClosedDayRead,
    ClosingCreate,
    ClosingPage,
    ClosingRead,
    PolicyChangePage,
    PolicyChangeRead,
    PolicyPreview,
    PolicyRead,
    PolicyWrite,
    PreviewRequest,
    Resolution,
)
from orders.lending.schemas import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from orders.ordering.schemas import MAX_ID
from orders.security import BEARER, caller, requires
from servicekit.api_keys import LIBRARY_STAFF

CodePath = Annotated[
    str,
    PathParameter(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="The category's code.",
    ),
]


def provide_categories(session: NamedDependency[AsyncSession]) -> CategoryService:
    return CategoryService(session)


class MemberCategoryController(Controller):
    path = "/v1/member-categories"
    tags = ["member categories"]
    dependencies = {"categories": Provide(provide_categories, sync_to_thread=False)}
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @get("", operation_class=DocumentedOperation, responses=problem_responses())
    async def list_categories(
        self, categories: NamedDependency[CategoryService]
    ) -> list[CategoryRead]:
        """List the member categories, by code."""
        return [CategoryRead.of(c) for c in await categories.list_categories()]

    @get("/{code:str}", operation_class=DocumentedOperation, responses=problem_responses(404, 422))
    async def get_category(
        self, categories: NamedDependency[CategoryService], code: CodePath
    ) -> CategoryRead:
        """Fetch one member category."""
        return CategoryRead.of(await categories.get(code=code))

    @post(
        "",
        guards=[requires(ADMIN), json_body(CategoryCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(409, 415, 422),
        response_headers=LOCATION,
    )
    async def create_category(
        self, data: JSONBody[CategoryCreate], categories: NamedDependency[CategoryService]
    ) -> Response[CategoryRead]:
        """Add a member category (admin key).

        It sets its members' total loan limit (`max_loans`) and when they are blocked:
        more loans overdue than `max_overdue_loans`, or fines owed above `max_balance`.
        A code that exists is a 409.
        """
        category = await categories.create(data=data)
        return Response(
            CategoryRead.of(category),
            status_code=201,
            headers={"Location": f"{self.path}/{category.code}"},
        )

    @patch(
        "/{code:str}",
        guards=[requires(ADMIN), json_body(CategoryUpdate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 415, 422),
    )
    async def update_category(
        self,
        data: JSONBody[CategoryUpdate],
        categories: NamedDependency[CategoryService],
        code: CodePath,
    ) -> CategoryRead:
        """Change some fields of a member category (admin key); its members follow at once."""
        return CategoryRead.of(await categories.update(code=code, changes=data))

    @delete(
        "/{code:str}",
        guards=[requires(ADMIN)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 422),
    )
    async def delete_category(
        self, categories: NamedDependency[CategoryService], code: CodePath
    ) -> None:
        """Delete a member category (admin key); refused (409) while a member has it."""
        await categories.delete(code=code)


def provide_policies(session: NamedDependency[AsyncSession], state: State) -> PolicyService:
    return PolicyService(session, books=state.books_client)


PolicyIdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="Policy id.")]


class PolicyController(Controller):
    path = "/v1/policies"
    tags = ["policies"]
    dependencies = {"policies": Provide(provide_policies, sync_to_thread=False)}
    # Staff may read the policies and ask which applies; only an admin changes them.
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @get("", operation_class=DocumentedOperation, responses=problem_responses())
    async def list_policies(self, policies: NamedDependency[PolicyService]) -> list[PolicyRead]:
        """List the lending policies, most specific match first (the default last)."""
        return [PolicyRead.of(p) for p in await policies.list_policies()]

    @get(
        "/resolve",
        operation_class=DocumentedOperation,
        responses=problem_responses(422, 502, 503),
    )
    async def resolve_policy(
        self,
        policies: NamedDependency[PolicyService],
        member_id: Annotated[int, QueryParameter(ge=1, le=MAX_ID, description="The member.")],
        book_id: Annotated[int, QueryParameter(ge=1, le=MAX_ID, description="The book.")],
    ) -> Resolution:
        """Which policy applies to a member borrowing a book, and why.

        Lists every match considered, most specific first: the member's category and the
        book's item type, the category alone, the item type alone, the default; the first
        that has a policy applies. Unknown member or book: 422.
        """
        return await policies.explain(member_id=member_id, book_id=book_id)

    @post(
        "/preview",
        status_code=200,
        guards=[json_body(PreviewRequest)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 415, 422),
        response_description="What the change would do to the loans out and holds open now.",
    )
    async def preview_change(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PreviewRequest],
        policies: NamedDependency[PolicyService],
    ) -> PolicyPreview:
        """Preview a policy or calendar change before making it; nothing is saved.

        Send one change: `policy` (a new policy), `policy_id` with `policy` (one
        replaced), `policy_id` with `delete: true`, or `closing` (days closed at short
        notice). The change is made, with every check it would meet (the same 404, 409
        and 422), in a transaction that is rolled back; the answer counts the active
        loans whose due date, fine if returned now, renewal or lost date would differ and
        the open holds that would change, with the first few as examples.
        """
        previewer = PolicyPreviewer(policies.session, policies=policies)
        return await previewer.preview(data=data, by=caller(request))

    @get(
        "/changes",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=PAGE_HEADERS,
    )
    async def policy_changes(
        self,
        request: Request[Any, Any, Any],
        policies: NamedDependency[PolicyService],
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
    ) -> Response[PolicyChangePage]:
        """The audit trail of the policies, newest first: who changed what, before and after."""
        return await self._changes(request, policies, None, limit, offset)

    @get(
        "/{policy_id:str}/changes",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=PAGE_HEADERS,
    )
    async def changes_of_policy(
        self,
        request: Request[Any, Any, Any],
        policies: NamedDependency[PolicyService],
        policy_id: PolicyIdPath,
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
    ) -> Response[PolicyChangePage]:
        """One policy's audit trail, newest first (a deleted policy's too)."""
        return await self._changes(request, policies, policy_id, limit, offset)

    @staticmethod
    async def _changes(
        request: Request[Any, Any, Any],
        policies: PolicyService,
        policy_id: int | None,
        limit: int,
        offset: int,
    ) -> Response[PolicyChangePage]:
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await policies.history(policy_id=policy_id, limit=limit, offset=offset)
        page = PolicyChangePage(
            data=[PolicyChangeRead.of(c) for c in found], total=total, limit=limit, offset=offset
        )
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/{policy_id:str}",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
    )
    async def get_policy(
        self, policies: NamedDependency[PolicyService], policy_id: PolicyIdPath
    ) -> PolicyRead:
        """Fetch one lending policy."""
        return PolicyRead.of(await policies.get(policy_id=policy_id))

    @post(
        "",
        guards=[requires(ADMIN), json_body(PolicyWrite)],
        operation_class=DocumentedOperation,
        responses=problem_responses(409, 415, 422),
        response_headers=LOCATION,
    )
    async def create_policy(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PolicyWrite],
        policies: NamedDependency[PolicyService],
    ) -> Response[PolicyRead]:
        """Add a lending policy for a member category and/or an item type (admin key).

        Null on a side means any. One policy per match (409 otherwise); an unknown
        member category is a 422. The change is kept in the audit trail.
        """
        policy = await policies.create(data=data, by=caller(request))
        return Response(
            PolicyRead.of(policy), status_code=201, headers={"Location": f"{self.path}/{policy.id}"}
        )

    @put(
        "/{policy_id:str}",
        guards=[requires(ADMIN), json_body(PolicyWrite)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 415, 422),
    )
    async def replace_policy(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PolicyWrite],
        policies: NamedDependency[PolicyService],
        policy_id: PolicyIdPath,
    ) -> PolicyRead:
        """Replace a lending policy whole (admin key).

        Loans and holds follow at their next action (renewal, return, pickup window). The
        default policy keeps its match (any, any): 409 otherwise.
        """
        return PolicyRead.of(
            await policies.replace(policy_id=policy_id, data=data, by=caller(request))
        )

    @delete(
        "/{policy_id:str}",
        guards=[requires(ADMIN)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 409, 422),
    )
    async def delete_policy(
        self,
        request: Request[Any, Any, Any],
        policies: NamedDependency[PolicyService],
        policy_id: PolicyIdPath,
    ) -> None:
        """Delete a lending policy (admin key); the default cannot be deleted (409)."""
        await policies.delete(policy_id=policy_id, by=caller(request))


def provide_calendar(session: NamedDependency[AsyncSession]) -> CalendarService:
    return CalendarService(session)


DayPath = Annotated[date, PathParameter(description="A UTC date, YYYY-MM-DD.")]


class CalendarController(Controller):
    path = "/v1/calendar/closed-days"
    tags = ["calendar"]
    dependencies = {"calendar": Provide(provide_calendar, sync_to_thread=False)}
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @get("", operation_class=DocumentedOperation, responses=problem_responses(422))
    async def list_closed_days(
        self,
        calendar: NamedDependency[CalendarService],
        since: Annotated[
            date | None, QueryParameter(description="Only this UTC date and later.")
        ] = None,
    ) -> list[ClosedDayRead]:
        """List the days the library is closed, earliest first."""
        return [ClosedDayRead.of(d) for d in await calendar.closed_days(since=since)]

    @post(
        "",
        guards=[requires(ADMIN), json_body(ClosedDayCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(409, 415, 422),
        response_headers=LOCATION,
    )
    async def close_day(
        self, data: JSONBody[ClosedDayCreate], calendar: NamedDependency[CalendarService]
    ) -> Response[ClosedDayRead]:
        """Close the library on a day (admin key).

        A due date set from now on that would fall on it moves to the next open day, at
        the same time of day; loans already out keep their due dates. A day closed
        already is a 409.
        """
        closed = await calendar.close(data=data)
        return Response(
            ClosedDayRead.of(closed),
            status_code=201,
            headers={"Location": f"{self.path}/{closed.day:%Y-%m-%d}"},
        )

    @delete(
        "/{day:str}",
        guards=[requires(ADMIN)],
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
    )
    async def reopen_day(self, calendar: NamedDependency[CalendarService], day: DayPath) -> None:
        """Open the library again on a closed day (admin key)."""
        await calendar.reopen(day=day)


ClosingIdPath = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="The closing's id.")]


class ClosingController(Controller):
    path = "/v1/calendar/closings"
    tags = ["calendar"]
    dependencies = {"calendar": Provide(provide_calendar, sync_to_thread=False)}
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @post(
        "",
        status_code=202,
        guards=[requires(ADMIN), json_body(ClosingCreate)],
        operation_class=DocumentedOperation,
        responses=problem_responses(415, 422),
        response_description="The closing, its days closed; `moving` until a job has moved "
        "every due date and pickup deadline on them (poll its Location).",
        response_headers=LOCATION,
    )
    async def close_at_short_notice(
        self, data: JSONBody[ClosingCreate], calendar: NamedDependency[CalendarService]
    ) -> Response[ClosingRead]:
        """Close the library from `first_day` to `last_day` at short notice (admin key).

        The days are closed at once (days closed already stay as they are). Then a job
        moves, in bounded batches, the due dates of the active loans and the pickup
        deadlines of the ready holds that fall on them to the next open day, at the same
        time of day, and counts them in `loans_moved` and `holds_moved`; `status` becomes
        `done`. A first day in the past, or a last day before the first or more than 365
        days after it, is a 422.
        """
        closing = await calendar.close_at_short_notice(data=data)
        return Response(
            ClosingRead.of(closing),
            status_code=202,
            headers={"Location": f"{self.path}/{closing.id}"},
        )

    @get(
        "",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=PAGE_HEADERS,
    )
    async def list_closings(
        self,
        request: Request[Any, Any, Any],
        calendar: NamedDependency[CalendarService],
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
    ) -> Response[ClosingPage]:
        """List closings, newest first, with what each moved."""
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await calendar.list_closings(limit=limit, offset=offset)
        page = ClosingPage(
            data=[ClosingRead.of(c) for c in found], total=total, limit=limit, offset=offset
        )
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/{closing_id:str}",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
    )
    async def get_closing(
        self, calendar: NamedDependency[CalendarService], closing_id: ClosingIdPath
    ) -> ClosingRead:
        """One closing: its days, its status and how many loans and holds it moved."""
        return ClosingRead.of(await calendar.closing(closing_id=closing_id))
