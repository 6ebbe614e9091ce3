"""Black-box contract: the seed README's curl examples against a real books process, sent
with an admin key as our README's versions of them do (`-H "Authorization: Bearer …"`)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from devstack.servers import free_port
from devstack.services import ServiceProcess
from servicekit.api_keys import bearer

SEED_BOOK_KEYS = {
    "id",
    "title",
    "author",
    "description",
    "price",
    "active",
    "image",
    "created_at",
    "updated_at",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture(scope="module")
def books_url(books_database_url: str) -> Iterator[str]:
    env = {"BOOKS_DATABASE_URL": books_database_url, "BOOKS_LOG_LEVEL": "WARNING"}
    with ServiceProcess("books.app:create_app", free_port(), env) as service:
        yield service.url


@pytest.fixture
def http(books_url: str, admin_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=books_url, timeout=5, headers=bearer(admin_key)) as client:
        yield client


def create(http: httpx.Client, title: str, price: str = "9.99") -> dict[str, object]:
    response = http.post(
        "/v1/books",
        json={"title": title, "author": "A", "description": "D", "price": price},
    )
    assert response.status_code == 201
    return response.json()  # type: ignore[no-any-return]


class TestSeedReadmeContract:
    def test_create_book(self, http: httpx.Client) -> None:
        response = http.post(
            "/v1/books",
            headers={"Content-Type": "application/json"},
            json={
                "title": "The Great Gatsby",
                "author": "F. Scott Fitzgerald",
                "description": "A classic American novel set in the Jazz Age.",
                "price": "19.99",
            },
        )
        assert response.status_code == 201
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body.keys() >= SEED_BOOK_KEYS
        assert response.headers["location"] == f"/v1/books/{body['id']}"
        assert (body["price"], body["active"], body["image"]) == ("19.99", True, None)
        assert RFC3339_UTC.match(body["created_at"])
        assert RFC3339_UTC.match(body["updated_at"])

    def test_get_book_by_id(self, http: httpx.Client) -> None:
        book = create(http, "Get me")
        assert http.get(f"/v1/books/{book['id']}").json() == book

    def test_list_paginated_with_headers(self, http: httpx.Client) -> None:
        for n in range(50):
            create(http, f"Book {n}")
        response = http.get("/v1/books", params={"limit": 10, "offset": 20})
        body = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (50, 10, 20)
        assert len(body["data"]) == 10
        assert response.headers["x-total-count"] == "50"
        link = response.headers["link"]
        assert '</v1/books?limit=10&offset=30>; rel="next"' in link
        assert '</v1/books?limit=10&offset=10>; rel="prev"' in link

    def test_empty_page(self, http: httpx.Client) -> None:
        for n in range(3):
            create(http, f"Book {n}")
        body = http.get("/v1/books?limit=20&offset=1000").json()
        assert body == {"data": [], "total": 3, "limit": 20, "offset": 1000}

    @pytest.mark.parametrize("query", ["limit=0", "offset=-1"])
    def test_validation_errors(self, http: httpx.Client, query: str) -> None:
        response = http.get(f"/v1/books?{query}")
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    def test_update_partial_then_soft_delete(self, http: httpx.Client) -> None:
        book = create(http, "Editable", price="9.99")
        response = http.put(
            f"/v1/books/{book['id']}",
            headers={"Content-Type": "application/json"},
            json={"price": "24.99", "description": "Updated description."},
        )
        assert response.status_code == 200
        assert response.json()["title"] == "Editable"
        assert response.json()["price"] == "24.99"
        assert http.delete(f"/v1/books/{book['id']}").status_code == 200
        assert http.get(f"/v1/books/{book['id']}").status_code == 404
        assert http.get("/v1/books").json()["total"] == 0

    def test_quick_reference(self, http: httpx.Client) -> None:
        created = http.post(
            "/v1/books",
            json={"title": "T", "author": "A", "description": "D", "price": "9.99"},
        )
        book_id = created.json()["id"]
        assert http.get("/v1/books").status_code == 200
        assert http.get("/v1/books?limit=5&offset=10").status_code == 200
        assert http.get(f"/v1/books/{book_id}").status_code == 200
        updated = http.put(f"/v1/books/{book_id}", json={"price": "11.49"})
        assert updated.json()["price"] == "11.49"
        assert http.delete(f"/v1/books/{book_id}").status_code == 200

    def test_smoke_check(self, http: httpx.Client) -> None:
        response = http.post(
            "/v1/books",
            json={"title": "Smoke", "author": "Tester", "description": "Smoke", "price": "1.00"},
        )
        assert isinstance(response.json()["id"], int)
        assert http.get("/health").json()["status"] == "healthy"
