"""The site's typed clients against the OpenAPI documents the running services publish:
a field the site reads that an API no longer promises, an enum value it no longer
sends, or a route the site calls that is gone, fails here rather than on a page."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.conftest import Site
from web import clients

SCHEMAS = {
    "books": {
        clients.Book: "BookRead",
        clients.CoverImage: "CoverImage",
        clients.BookPage: "BookPage",
    },
    "orders": {
        clients.Order: "OrderRead",
        clients.OrderItem: "OrderItemRead",
        clients.OrderPage: "OrderPage",
        clients.Member: "MemberRead",
        clients.MemberPage: "MemberPage",
        clients.Borrow: "BorrowRead",
        clients.BorrowPage: "BorrowPage",
        clients.Hold: "HoldRead",
        clients.HoldPage: "HoldPage",
        clients.LibrarySummary: "LibrarySummary",
        clients.PopularBook: "PopularBook",
        clients.DailyLoans: "DailyLoans",
        clients.FieldError: "FieldError",
    },
}
# Every call the site makes: (service, method, path as the documents write it).
ROUTES = [
    ("books", "get", "/v1/books"),
    ("books", "get", "/v1/books/{book_id}"),
    ("orders", "post", "/v1/orders"),
    ("orders", "get", "/v1/orders"),
    ("orders", "get", "/v1/orders/{order_id}"),
    ("orders", "post", "/v1/orders/{order_id}/cancel"),
    ("orders", "get", "/v1/members"),
    ("orders", "post", "/v1/members"),
    ("orders", "get", "/v1/members/{member_id}"),
    ("orders", "get", "/v1/members/{member_id}/borrows"),
    ("orders", "post", "/v1/borrows"),
    ("orders", "get", "/v1/borrows"),
    ("orders", "post", "/v1/borrows/{borrow_id}/return"),
    ("orders", "post", "/v1/borrows/{borrow_id}/renew"),
    ("orders", "get", "/v1/holds"),
    ("orders", "post", "/v1/holds/{hold_id}/checkout"),
    ("orders", "get", "/v1/library/summary"),
    ("orders", "get", "/v1/library/popular"),
    ("orders", "get", "/v1/library/daily"),
]


@pytest.fixture(scope="module")
def documents(site: Site) -> dict[str, dict[str, Any]]:
    return {
        "books": site.books.get("/openapi.json").json(),
        "orders": site.orders.get("/docs/openapi.json").json(),
    }


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if ref := schema.get("$ref"):
        return dict(document["components"]["schemas"][ref.rpartition("/")[2]])
    return schema


def enum_values(document: dict[str, Any], schema: dict[str, Any]) -> set[Any] | None:
    """The values an enum property may take (through $ref, allOf and nullable unions)."""
    resolved = resolve(document, schema)
    if "enum" in resolved:
        return set(resolved["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        for option in resolved.get(key, []):
            if (values := enum_values(document, option)) is not None:
                return values
    return None


def literal_values(schema: dict[str, Any]) -> set[Any] | None:
    """The values of one of our `Literal[...]` fields (msgspec writes them inline)."""
    for option in [schema, *schema.get("anyOf", [])]:
        if "enum" in option:
            return set(option["enum"])
    return None


@pytest.mark.parametrize(
    ("service", "struct", "name"),
    [
        (service, struct, name)
        for service, pairs in SCHEMAS.items()
        for struct, name in pairs.items()
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_each_field_the_site_reads_is_promised(
    documents: dict[str, dict[str, Any]], service: str, struct: type[msgspec.Struct], name: str
) -> None:
    document = documents[service]
    schema = document["components"]["schemas"][name]
    required = set(schema.get("required", []))
    ours = msgspec.json.schema(struct)
    ours = ours["$defs"][ours["$ref"].rpartition("/")[2]]
    for field in struct.__struct_fields__:
        assert field in schema["properties"], f"{service} {name} has no {field}"
        if field in ours.get("required", []):
            assert field in required, f"{service} {name}.{field} may be missing"
        theirs = enum_values(document, schema["properties"][field])
        mine = literal_values(ours["properties"][field])
        if theirs is not None and mine is not None:
            assert theirs <= mine, f"{service} {name}.{field} may be {theirs - mine}"


@pytest.mark.parametrize(("service", "method", "path"), ROUTES)
def test_each_route_the_site_calls_exists(
    documents: dict[str, dict[str, Any]], service: str, method: str, path: str
) -> None:
    assert method in documents[service]["paths"].get(path, {}), f"{method.upper()} {path}"


def test_the_site_imports_nothing_of_the_services() -> None:
    """Only the public APIs join the site to the services: no import of their code."""
    source = Path(clients.__file__).parent
    imports = set()
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imports.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imports |= {alias.name.split(".")[0] for alias in node.names}
    assert imports & {"books", "orders", "workers", "devstack"} == set()
