"""Titles and authors are trimmed with whitespace runs collapsed (the predecessor's rule)
on create, update and multipart create; a description is trimmed and keeps its lines."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import book_payload
from tests.covers.test_create_with_cover import post_form

MESSY = {"title": "  The   Great \t Gatsby ", "author": "F.\u00a0 Scott\n\nFitzgerald "}
TIDY = {"title": "The Great Gatsby", "author": "F. Scott Fitzgerald"}
DESCRIPTION_SENT = "\n  First paragraph.\n\n  Second   paragraph.  \n"
DESCRIPTION_KEPT = "First paragraph.\n\n  Second   paragraph."


def names(body: dict[str, Any]) -> dict[str, str]:
    return {"title": body["title"], "author": body["author"]}


class TestCreate:
    async def test_json_collapses_names_and_keeps_description_lines(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/v1/books", json=book_payload(**MESSY, description=DESCRIPTION_SENT)
        )
        assert response.status_code == 201, response.text
        stored = (await client.get(response.headers["location"])).json()
        assert names(stored) == TIDY
        assert stored["description"] == DESCRIPTION_KEPT

    async def test_multipart_collapses_names(self, client: httpx.AsyncClient) -> None:
        response = await post_form(client, **MESSY, description=DESCRIPTION_SENT)
        assert response.status_code == 201, response.text
        assert names(response.json()) == TIDY
        assert response.json()["description"] == DESCRIPTION_KEPT

    @pytest.mark.parametrize("field", ["title", "author"])
    async def test_whitespace_only_is_still_blank(
        self, client: httpx.AsyncClient, field: str
    ) -> None:
        response = await client.post("/v1/books", json=book_payload(**{field: " \t\n "}))
        assert response.status_code == 422


class TestUpdate:
    @pytest.mark.parametrize("method", ["PUT", "PATCH"])
    async def test_collapses_names(
        self, client: httpx.AsyncClient, make_book: Any, method: str
    ) -> None:
        book = await make_book(title="Old", author="Someone")
        response = await client.request(method, f"/v1/books/{book['id']}", json=MESSY)
        assert response.status_code == 200, response.text
        assert names(response.json()) == TIDY
        assert names((await client.get(f"/v1/books/{book['id']}")).json()) == TIDY


class TestSearchSeesNormalizedText:
    @pytest.mark.parametrize(
        "params",
        [{"q": "great    gatsby"}, {"q": " Scott\tFitz"}, {"author": "f.  scott   fitzgerald"}],
    )
    async def test_spacing_of_the_query_does_not_matter(
        self, client: httpx.AsyncClient, make_book: Any, params: dict[str, str]
    ) -> None:
        await make_book(**MESSY)
        await make_book(title="Other", author="Nobody")
        found = (await client.get("/v1/books", params=params)).json()
        assert [names(book) for book in found["data"]] == [TIDY]
