"""Text PostgreSQL cannot store is a 422 naming the field, never a 500, and nothing is
written (found by schemathesis: a NUL byte in a title reached the database)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import book_payload

NUL = "a\u0000b"


@pytest.mark.parametrize("field", ["title", "author", "description"])
async def test_a_nul_in_a_text_field_is_refused_on_create_and_update(
    client: httpx.AsyncClient, field: str
) -> None:
    created = await client.post("/v1/books", json=book_payload(**{field: NUL}))
    assert created.status_code == 422, created.text
    assert created.json()["errors"][0]["field"] == field
    assert "NUL" in created.json()["errors"][0]["message"]
    book = (await client.post("/v1/books", json=book_payload())).json()
    updated = await client.patch(f"/v1/books/{book['id']}", json={field: NUL})
    assert updated.status_code == 422, updated.text
    assert (await client.get(f"/v1/books/{book['id']}")).json() == book


async def test_a_nul_in_a_search_or_a_cover_id_is_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/books", params={"q": NUL})).status_code == 422
    image = {"url": "https://res.cloudinary.com/demo/image/upload/x.jpg", "public_id": NUL}
    created = await client.post("/v1/books", json=book_payload(image=image))
    assert created.status_code == 422, created.text
    assert created.json()["errors"][0]["field"] == "image.public_id"
    listed = await client.get("/v1/books")
    assert listed.json()["total"] == 0
