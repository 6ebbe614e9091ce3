"""Every problem of both services carries `error` (a stable code) and `message`, and every
code is in the one table: each service's OpenAPI description and the README.

The walk imports every module of books, orders and servicekit, so a problem class added
anywhere without a code, or missing from the tables, fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from litestar import Litestar, get
from litestar.params import QueryParameter

import books
import books.app
import books.config
import orders
import orders.app
import orders.config
import servicekit
from books.db import close_databases
from devstack.servers import free_port
from servicekit.api_keys import bearer, new_token
from servicekit.problems import FRAMEWORK_CODES, ProblemError, problem_codes, problem_errors

CODE = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")
README = Path(__file__).resolve().parents[2] / "README.md"
README_ROW = re.compile(
    r"^\| `(?P<code>[A-Z0-9_]+)` \| (?P<status>\d{3}) \| (?P<services>[^|]+) \|"
)

for _package in (books, orders, servicekit):
    for _module in pkgutil.walk_packages(_package.__path__, f"{_package.__name__}."):
        importlib.import_module(_module.name)

SERVICES = ("books", "orders")
ERRORS = {service: problem_errors(service, "servicekit") for service in SERVICES}
EVERY_ERROR = [(service, error) for service in SERVICES for error in ERRORS[service]]


def _sample(error: type[ProblemError]) -> ProblemError:
    """An instance of `error` without its own constructor's arguments."""
    problem = error.__new__(error)
    ProblemError.__init__(problem, f"A sample {error.__qualname__}.")
    return problem


def _raiser(by_name: dict[str, type[ProblemError]]) -> Callable[[str], Any]:
    # FastAPI ignores Litestar's marker; Litestar wants it to read a query parameter.
    async def raise_it(name: Annotated[str, QueryParameter()]) -> None:
        raise _sample(by_name[name])

    return raise_it


def _unreachable_database(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/{database}"


@pytest.fixture(scope="module")
async def clients() -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Each service's app with a `/raise?name=` route raising the problem it names (no
    database is needed: the problems are raised before any query)."""
    books_app: FastAPI = books.app.create_app(
        books.config.Settings(database_url=_unreachable_database("books_db"))
    )
    books_app.get("/raise")(_raiser({e.__qualname__: e for e in ERRORS["books"]}))
    orders_app: Litestar = orders.app.create_app(
        orders.config.Settings(database_url=_unreachable_database("orders_db"))
    )
    orders_app.register(get("/raise")(_raiser({e.__qualname__: e for e in ERRORS["orders"]})))
    made = {
        service: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url=f"http://{service}.test",
        )
        for service, app in (("books", books_app), ("orders", orders_app))
    }
    yield made
    for client in made.values():
        await client.aclose()
    await close_databases(books_app)
    await orders_app.state.books_client.aclose()
    await orders_app.state.engine.dispose()
    await orders_app.state.reads.close()


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["message"] == body["detail"]
    return body


def _readme_table() -> dict[tuple[str, int], str]:
    """The README's table of codes: (code, status) -> its services column."""
    rows = (README_ROW.match(line) for line in README.read_text().splitlines())
    return {(row["code"], int(row["status"])): row["services"] for row in rows if row}


class TestEveryProblemClass:
    @pytest.mark.parametrize("service", SERVICES)
    def test_the_walk_finds_each_services_problems(self, service: str) -> None:
        assert len(ERRORS[service]) >= 10

    @pytest.mark.parametrize(("service", "error"), EVERY_ERROR, ids=str)
    def test_declares_a_code(self, service: str, error: type[ProblemError]) -> None:
        assert CODE.fullmatch(getattr(error, "code", "")), f"{error} has no code"

    @pytest.mark.parametrize(("service", "error"), EVERY_ERROR, ids=str)
    async def test_renders_error_and_message(
        self, clients: dict[str, httpx.AsyncClient], service: str, error: type[ProblemError]
    ) -> None:
        response = await clients[service].get("/raise", params={"name": error.__qualname__})
        body = _problem(response, error.status)
        assert body["error"] == error.code
        assert body["detail"] == f"A sample {error.__qualname__}."


class TestFrameworkProblems:
    @pytest.mark.parametrize(
        ("service", "method", "path", "status", "code"),
        [(service, "GET", "/v1/nothing", 404, "NOT_FOUND") for service in SERVICES]
        + [(service, "PATCH", "/health", 405, "METHOD_NOT_ALLOWED") for service in SERVICES]
        + [(service, "GET", "/raise", 422, "VALIDATION_ERROR") for service in SERVICES]
        + [
            ("books", "GET", "/v1/books/abc", 422, "VALIDATION_ERROR"),
            ("books", "GET", "/v1/books/1", 503, "SERVICE_UNAVAILABLE"),
            # With a key, whose lookup is the first query to fail.
            ("orders", "GET", "/v1/orders/1", 503, "SERVICE_UNAVAILABLE"),
        ],
    )
    async def test_carry_their_code(
        self,
        clients: dict[str, httpx.AsyncClient],
        service: str,
        method: str,
        path: str,
        status: int,
        code: str,
    ) -> None:
        headers = bearer(new_token()) if service == "orders" else {}
        response = await clients[service].request(method, path, headers=headers)
        body = _problem(response, status)
        assert body["error"] == code

    @pytest.mark.parametrize("service", SERVICES)
    def test_are_in_each_services_table(self, service: str) -> None:
        assert set(FRAMEWORK_CODES) <= set(problem_codes(ERRORS[service]))


class TestTableOfCodes:
    @pytest.mark.parametrize(
        ("service", "path"), [("books", "/openapi.json"), ("orders", "/docs/openapi.json")]
    )
    async def test_openapi_describes_every_code(
        self, clients: dict[str, httpx.AsyncClient], service: str, path: str
    ) -> None:
        schema = (await clients[service].get(path)).json()
        description = schema["info"]["description"]
        for row in problem_codes(ERRORS[service]):
            assert f"| `{row.code}` | {row.status} |" in description, row
        assert {"error", "message"} <= set(schema["components"]["schemas"]["Problem"]["required"])

    @pytest.mark.parametrize("service", SERVICES)
    def test_readme_lists_every_code(self, service: str) -> None:
        table = _readme_table()
        missing = [
            row
            for row in problem_codes(ERRORS[service])
            if service not in table.get((row.code, row.status), "")
        ]
        assert not missing, missing
