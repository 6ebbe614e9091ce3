"""HTTP layer of the circulation rules: member categories and lending policies."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from orders.http import DocumentedOperation, json_body, problem_responses
from orders.lending.categories import CategoryService
from orders.lending.controllers import LOCATION
from orders.lending.rule_schemas import CategoryCreate, CategoryRead, CategoryUpdate
from orders.security import BEARER, requires
from servicekit.api_keys import LIBRARY_STAFF, Role

ADMIN = frozenset({Role.ADMIN})
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
