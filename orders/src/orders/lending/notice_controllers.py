"""HTTP layer of notices: a member's notices and the staff list, with their delivery."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from orders.http import DocumentedOperation, paged, problem_responses
from orders.lending.controllers import PAGE_HEADERS, Limit, MemberIdPath, Offset
from orders.lending.models import NoticeStatus
from orders.lending.notices import NoticeService
from orders.lending.schemas import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, NoticePage, NoticeRead
from orders.security import BEARER, requires
from servicekit.api_keys import LIBRARY_STAFF

StatusFilter = Annotated[
    NoticeStatus | None,
    QueryParameter(description="Only notices whose delivery has this status."),
]


def provide_notices(session: NamedDependency[AsyncSession]) -> NoticeService:
    return NoticeService(session)


class NoticeController(Controller):
    path = "/v1"
    tags = ["notices"]
    dependencies = {"notices": Provide(provide_notices, sync_to_thread=False)}
    guards = [requires(LIBRARY_STAFF)]
    security = BEARER

    @get(
        "/members/{member_id:str}/notices",
        operation_class=DocumentedOperation,
        responses=problem_responses(404, 422),
        response_headers=PAGE_HEADERS,
    )
    async def member_notices(
        self,
        request: Request[Any, Any, Any],
        notices: NamedDependency[NoticeService],
        member_id: MemberIdPath,
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
        status: StatusFilter = None,
    ) -> Response[NoticePage]:
        """The notices sent (or to be sent) to a member, newest first, with their delivery.

        `status` says where each mail is; `attempts` counts the tries, `last_error` says
        why the last failed one failed.
        """
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await notices.of_member(
            member_id=member_id, status=status, limit=limit, offset=offset
        )
        page = NoticePage(
            data=[NoticeRead.of(n) for n in found], total=total, limit=limit, offset=offset
        )
        return paged(request, page, total=total, limit=limit, offset=offset)

    @get(
        "/notices",
        operation_class=DocumentedOperation,
        responses=problem_responses(422),
        response_headers=PAGE_HEADERS,
    )
    async def list_notices(
        self,
        request: Request[Any, Any, Any],
        notices: NamedDependency[NoticeService],
        limit: Limit = DEFAULT_PAGE_SIZE,
        offset: Offset = 0,
        status: StatusFilter = None,
    ) -> Response[NoticePage]:
        """All members' notices, newest first: `status=failed` lists the undelivered ones."""
        limit = min(limit, MAX_PAGE_SIZE)
        found, total = await notices.list_notices(status=status, limit=limit, offset=offset)
        page = NoticePage(
            data=[NoticeRead.of(n) for n in found], total=total, limit=limit, offset=offset
        )
        return paged(request, page, total=total, limit=limit, offset=offset)
