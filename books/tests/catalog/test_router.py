"""The public catalog API, endpoint by endpoint, over the real database."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest

from books.catalog.reads import DAY_SKIP_FROM_OFFSET
from books.catalog.schemas import BookListQuery
from tests.conftest import assert_problem, book_payload, count_books


def parse_links(header: str) -> dict[str, str]:
    links = {}
    for part in header.split(", "):
        url, rel = part.split("; ")
        links[rel.removeprefix('rel="').removesuffix('"')] = url.strip("<>")
    return links


class TestCreateBook:
    async def test_returns_201_with_location_and_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/books", json=book_payload())
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/v1/books/{body['id']}"
        assert body | {"id": 1} == {
            **book_payload(),
            "id": 1,
            "active": True,
            "image": None,
            "stock": None,
            "copies_total": None,
            "copies_available": None,
            "format": "book",
            "created_at": body["created_at"],
            "updated_at": body["updated_at"],
        }
        assert body["created_at"].endswith("Z")

    async def test_trims_strings(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/books", json=book_payload(title="  Dune \n"))
        assert response.json()["title"] == "Dune"

    @pytest.mark.parametrize(
        ("price", "wire"),
        [
            ("19.9", "19.90"),
            (19.99, "19.99"),
            (7, "7.00"),
            ("0", "0.00"),
            ("99999999.99", "99999999.99"),
        ],
    )
    async def test_accepts_prices_as_strings_or_numbers(
        self, client: httpx.AsyncClient, price: Any, wire: str
    ) -> None:
        response = await client.post("/v1/books", json=book_payload(price=price))
        assert response.status_code == 201
        assert response.json()["price"] == wire

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"title": "   "}, "title"),
            ({"author": ""}, "author"),
            ({"description": "\t"}, "description"),
            ({"title": None}, "title"),
            ({"title": 42}, "title"),
            ({"price": "19.999"}, "price"),
            ({"price": 19.999}, "price"),
            ({"price": "-0.01"}, "price"),
            ({"price": "NaN"}, "price"),
            ({"price": "Infinity"}, "price"),
            ({"price": "100000000.00"}, "price"),
            ({"price": "abc"}, "price"),
            ({"price": True}, "price"),
            ({"isbn": "123"}, "isbn"),
            ({"image": {"url": "not a url", "public_id": "x"}}, "image.url"),
        ],
    )
    async def test_rejects_bad_fields_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        overrides: dict[str, Any],
        field: str,
    ) -> None:
        response = await client.post("/v1/books", json=book_payload(**overrides))
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == [field]
        assert problem["errors"][0]["in"] == "body"
        assert count_books(db) == 0

    async def test_lists_every_missing_field(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        problem = assert_problem(await client.post("/v1/books", json={}), 422)
        fields = {error["field"] for error in problem["errors"]}
        assert fields == {"title", "author", "description", "price"}
        assert count_books(db) == 0

    async def test_rejects_malformed_json(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        response = await client.post(
            "/v1/books", content=b'{"title": ', headers={"content-type": "application/json"}
        )
        assert_problem(response, 422)
        assert count_books(db) == 0

    async def test_rejects_other_media_types(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        response = await client.post(
            "/v1/books", content=b"title=x", headers={"content-type": "text/plain"}
        )
        problem = assert_problem(response, 415)
        assert "text/plain" in problem["detail"]
        assert count_books(db) == 0


class TestListBooks:
    async def test_newest_first_with_envelope_and_headers(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        books = [await make_book(title=f"Book {n}") for n in range(3)]
        response = await client.get("/v1/books")
        assert response.status_code == 200
        body = response.json()
        assert [b["id"] for b in body["data"]] == [b["id"] for b in reversed(books)]
        assert (body["total"], body["limit"], body["offset"]) == (3, 20, 0)
        assert response.headers["x-total-count"] == "3"
        assert parse_links(response.headers["link"]) == {
            "first": "/v1/books?limit=20&offset=0",
            "last": "/v1/books?limit=20&offset=0",
        }

    async def test_same_timestamp_is_ordered_by_id(
        self, client: httpx.AsyncClient, make_book: Any, db: psycopg.Connection[Any]
    ) -> None:
        for n in range(3):
            await make_book(title=f"Book {n}")
        db.execute("UPDATE books SET created_at = '2024-01-01T00:00:00Z'")
        body = (await client.get("/v1/books")).json()
        assert [b["id"] for b in body["data"]] == [3, 2, 1]

    async def test_pages_follow_the_seed_contract(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        for n in range(7):
            await make_book(title=f"Book {n}")
        response = await client.get("/v1/books?limit=2&offset=2")
        assert [b["title"] for b in response.json()["data"]] == ["Book 4", "Book 3"]
        assert parse_links(response.headers["link"]) == {
            "first": "/v1/books?limit=2&offset=0",
            "prev": "/v1/books?limit=2&offset=0",
            "next": "/v1/books?limit=2&offset=4",
            "last": "/v1/books?limit=2&offset=6",
        }

    @pytest.mark.parametrize("limit", [1, 2, 3, 5, 8])
    async def test_following_next_links_visits_every_book_once(
        self, client: httpx.AsyncClient, make_book: Any, limit: int
    ) -> None:
        for n in range(7):
            await make_book(title=f"Book {n}")
        seen: list[int] = []
        url: str | None = f"/v1/books?limit={limit}"
        while url:
            response = await client.get(url)
            seen += [b["id"] for b in response.json()["data"]]
            url = parse_links(response.headers["link"]).get("next")
        assert sorted(seen) == list(range(1, 8))

    async def test_past_the_end_is_an_empty_page(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        await make_book()
        response = await client.get("/v1/books?limit=20&offset=1000")
        assert response.json() == {"data": [], "total": 1, "limit": 20, "offset": 1000}
        assert parse_links(response.headers["link"])["prev"] == "/v1/books?limit=20&offset=0"

    async def test_deep_pages_are_the_pages_offset_finds(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        """Past DAY_SKIP_FROM_OFFSET an unfiltered page starts at its day (the day counts of
        migration 0012); it must be the page `OFFSET` finds, whatever the days hold: books
        across 40 days, several at the very same instant, some inactive, one moved to
        another day, one deleted."""
        books = DAY_SKIP_FROM_OFFSET + 2_000
        db.execute(
            "INSERT INTO books (title, author, description, price, created_at)"
            " SELECT 'T' || n, 'A', 'D', 1, timestamptz '2026-01-01 23:59:59.5Z'"
            " - mod(n, 40) * interval '1 day' - mod(n, 7) * interval '1 hour'"
            " FROM generate_series(1, %s) AS n",
            (books,),
        )
        db.execute("UPDATE books SET active = false WHERE mod(id, 97) = 0")
        db.execute("UPDATE books SET created_at = created_at - interval '3 days' WHERE id = 5")
        db.execute("DELETE FROM books WHERE id = 6")
        [(active,)] = db.execute("SELECT count(*) FROM books WHERE active").fetchall()
        plain = (
            "SELECT id FROM books WHERE active ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s"
        )
        for offset in (DAY_SKIP_FROM_OFFSET, DAY_SKIP_FROM_OFFSET + 1, 10_299, active - 20):
            for limit in (1, 20, 100):
                response = await client.get(f"/v1/books?limit={limit}&offset={offset}")
                expected = [row[0] for row in db.execute(plain, (limit, offset))]
                assert [book["id"] for book in response.json()["data"]] == expected
                assert response.headers["x-total-count"] == str(active)
        past = await client.get(f"/v1/books?limit=20&offset={active}")
        assert past.json()["data"] == []
        counted = db.execute(
            "SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM books WHERE active"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
        kept = db.execute(
            "SELECT day, active_books FROM catalog_days WHERE active_books > 0 ORDER BY 1"
        ).fetchall()
        assert kept == counted

    async def test_links_keep_filters(self, client: httpx.AsyncClient, make_book: Any) -> None:
        for _ in range(3):
            await make_book(author="Ann Leckie")
        response = await client.get("/v1/books?author=ann+leckie&limit=1")
        assert parse_links(response.headers["link"])["next"] == (
            "/v1/books?limit=1&offset=1&author=ann+leckie"
        )

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("offset=-1", "offset"),
            ("min_price=1.001", "min_price"),
            ("max_price=-1", "max_price"),
            ("ids=1,x", "ids"),
            ("ids=" + ",".join(str(n) for n in range(1, 102)), "ids"),
            ("q=", "q"),
        ],
    )
    async def test_rejects_bad_query_parameters(
        self, client: httpx.AsyncClient, query: str, field: str
    ) -> None:
        problem = assert_problem(await client.get(f"/v1/books?{query}"), 422)
        assert [(e["field"], e["in"]) for e in problem["errors"]] == [(field, "query")]

    async def test_documents_every_query_parameter_with_its_rules(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        parameters = {p["name"]: p for p in document["paths"]["/v1/books"]["get"]["parameters"]}
        assert set(parameters) == set(BookListQuery.model_fields)
        assert {p["in"] for p in parameters.values()} == {"query"}
        assert not any(p["required"] for p in parameters.values())
        limit = parameters["limit"]["schema"]
        assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
        assert parameters["ids"]["description"].startswith("Comma-separated book ids")

    async def test_rejects_inverted_price_range(self, client: httpx.AsyncClient) -> None:
        problem = assert_problem(await client.get("/v1/books?min_price=5&max_price=1"), 422)
        assert "min_price must not exceed max_price" in problem["errors"][0]["message"]

    async def test_filters_by_author_case_insensitively(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        await make_book(author="Ursula K. Le Guin")
        await make_book(author="Someone Else")
        body = (await client.get("/v1/books?author=ursula k. le guin")).json()
        assert [b["author"] for b in body["data"]] == ["Ursula K. Le Guin"]
        assert body["total"] == 1

    async def test_searches_title_and_author(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        await make_book(title="The Left Hand of Darkness", author="Le Guin")
        await make_book(title="Dune", author="Frank Herbert")
        await make_book(title="Darkness Visible", author="William Styron")
        await make_book(title="100% Pure", author="Percent")
        body = (await client.get("/v1/books?q=DARK")).json()
        assert {b["title"] for b in body["data"]} == {
            "The Left Hand of Darkness",
            "Darkness Visible",
        }
        assert body["total"] == 2
        percent = (await client.get("/v1/books", params={"q": "0%"})).json()
        assert [b["title"] for b in percent["data"]] == ["100% Pure"]

    async def test_filters_by_price_range(self, client: httpx.AsyncClient, make_book: Any) -> None:
        for price in ("5.00", "10.00", "15.00"):
            await make_book(price=price)
        body = (await client.get("/v1/books?min_price=10&max_price=15")).json()
        assert sorted(b["price"] for b in body["data"]) == ["10.00", "15.00"]
        assert body["total"] == 2

    async def test_batch_lookup_by_ids_returns_only_active_books(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        first, second, deleted = [await make_book(title=f"B{n}") for n in range(3)]
        await client.delete(f"/v1/books/{deleted['id']}")
        ids = f"{first['id']},{second['id']},{deleted['id']},999"
        body = (await client.get(f"/v1/books?ids={ids}&limit=100")).json()
        assert sorted(b["id"] for b in body["data"]) == [first["id"], second["id"]]
        assert body["total"] == 2

    async def test_total_counts_active_books_only(
        self, client: httpx.AsyncClient, make_book: Any, db: psycopg.Connection[Any]
    ) -> None:
        books = [await make_book() for _ in range(4)]
        await client.delete(f"/v1/books/{books[0]['id']}")
        await client.patch(f"/v1/books/{books[1]['id']}", json={"price": "1.00"})
        response = await client.get("/v1/books?limit=1")
        assert response.headers["x-total-count"] == "3"
        counter = db.execute("SELECT active_books FROM catalog_counters").fetchone()
        assert counter == (3,)


class TestGetBook:
    async def test_returns_the_book(self, client: httpx.AsyncClient, make_book: Any) -> None:
        book = await make_book()
        response = await client.get(f"/v1/books/{book['id']}")
        assert response.status_code == 200
        assert response.json() == book

    async def test_missing_book_is_404(self, client: httpx.AsyncClient) -> None:
        problem = assert_problem(await client.get("/v1/books/12345"), 404)
        assert problem["detail"] == "No active book has id 12345."
        assert problem["instance"] == "/v1/books/12345"

    async def test_deleted_book_is_404(self, client: httpx.AsyncClient, make_book: Any) -> None:
        book = await make_book()
        await client.delete(f"/v1/books/{book['id']}")
        assert_problem(await client.get(f"/v1/books/{book['id']}"), 404)

    @pytest.mark.parametrize("book_id", ["abc", "1.5", "0", "-3", "99999999999999999999"])
    async def test_invalid_id_is_422(self, client: httpx.AsyncClient, book_id: str) -> None:
        problem = assert_problem(await client.get(f"/v1/books/{book_id}"), 422)
        assert problem["errors"][0] | {"message": ""} == {
            "field": "book_id",
            "in": "path",
            "message": "",
        }


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
class TestUpdateBook:
    async def test_changes_only_the_fields_sent(
        self, client: httpx.AsyncClient, make_book: Any, method: str
    ) -> None:
        book = await make_book()
        response = await client.request(
            method,
            f"/v1/books/{book['id']}",
            json={"price": "24.99", "description": "Updated description."},
        )
        assert response.status_code == 200
        updated = response.json()
        assert updated["price"] == "24.99"
        assert updated["description"] == "Updated description."
        assert (updated["title"], updated["author"]) == (book["title"], book["author"])
        assert updated["updated_at"] > book["updated_at"]
        assert updated["created_at"] == book["created_at"]

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"title": None},
            {"price": None},
            {"title": "  "},
            {"price": "1.234"},
            {"color": "red"},
        ],
    )
    async def test_rejects_bad_changes_and_keeps_the_book(
        self, client: httpx.AsyncClient, make_book: Any, method: str, payload: dict[str, Any]
    ) -> None:
        book = await make_book()
        response = await client.request(method, f"/v1/books/{book['id']}", json=payload)
        assert_problem(response, 422)
        assert (await client.get(f"/v1/books/{book['id']}")).json() == book

    async def test_missing_or_deleted_book_is_404(
        self, client: httpx.AsyncClient, make_book: Any, method: str
    ) -> None:
        assert_problem(await client.request(method, "/v1/books/999", json={"price": "1"}), 404)
        book = await make_book()
        await client.delete(f"/v1/books/{book['id']}")
        response = await client.request(method, f"/v1/books/{book['id']}", json={"price": "1"})
        assert_problem(response, 404)

    async def test_rejects_non_json_bodies(
        self, client: httpx.AsyncClient, make_book: Any, method: str
    ) -> None:
        book = await make_book()
        response = await client.request(method, f"/v1/books/{book['id']}", data={"price": "1.00"})
        assert_problem(response, 415)


class TestConcurrentUpdates:
    async def test_updates_of_different_fields_both_survive(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        for round_ in range(10):
            book = await make_book()
            title, price = f"Title {round_}", f"{round_}.50"
            await asyncio.gather(
                client.patch(f"/v1/books/{book['id']}", json={"title": title}),
                client.patch(f"/v1/books/{book['id']}", json={"price": price}),
            )
            final = (await client.get(f"/v1/books/{book['id']}")).json()
            assert (final["title"], final["price"]) == (title, price)


class TestDeleteBook:
    async def test_soft_deletes_once(
        self, client: httpx.AsyncClient, make_book: Any, db: psycopg.Connection[Any]
    ) -> None:
        book = await make_book()
        response = await client.delete(f"/v1/books/{book['id']}")
        assert response.status_code == 200
        assert response.json() == {"message": f"Book with ID {book['id']} was deleted successfully"}
        assert db.execute("SELECT active FROM books WHERE id = %s", [book["id"]]).fetchone() == (
            False,
        )
        assert_problem(await client.delete(f"/v1/books/{book['id']}"), 404)
        assert (await client.get("/v1/books")).json()["total"] == 0

    async def test_answer_is_documented(self, client: httpx.AsyncClient) -> None:
        delete = (await client.get("/openapi.json")).json()["paths"]["/v1/books/{book_id}"][
            "delete"
        ]
        assert set(delete["responses"]) == {"200", "401", "403", "404", "422", "429", "500"}
        schema = delete["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/BookDeleted"}

    async def test_concurrent_deletes_succeed_once(
        self, client: httpx.AsyncClient, make_book: Any
    ) -> None:
        book = await make_book()
        responses = await asyncio.gather(
            *(client.delete(f"/v1/books/{book['id']}") for _ in range(8))
        )
        assert sorted(r.status_code for r in responses) == [200] + [404] * 7
        assert (await client.get("/v1/books")).headers["x-total-count"] == "0"
