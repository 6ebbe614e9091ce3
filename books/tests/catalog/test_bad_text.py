"""Text PostgreSQL cannot store is a 422 naming the field, never a 500, and nothing is
written (found by schemathesis: a NUL byte in a title reached the database)."""

from __future__ import annotations

from collections.abc import AsyncIterator

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


async def test_a_body_that_is_not_utf8_or_nested_too_deeply_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    headers = {"content-type": "application/json"}
    for body, message in ((b'{"title": "\xff\xfe"}', "not UTF-8"), (b"[" * 100_000, "too deeply")):
        response = await client.post("/v1/books", content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert message in response.json()["errors"][0]["message"]


async def test_a_body_larger_than_a_cover_upload_is_a_413(client: httpx.AsyncClient) -> None:
    huge = b'{"title": "' + b"a" * (7 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/v1/books", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["error"] == "BODY_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(huge), 1024 * 1024):
            yield huge[start : start + 1024 * 1024]

    streamed = await client.post(
        "/v1/books", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text[:300]
    assert streamed.json()["error"] == "BODY_TOO_LARGE"
    assert (await client.get("/v1/books")).json()["total"] == 0


async def test_an_id_past_bigint_in_a_batch_lookup_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/books", params={"ids": "1," + "9" * 40})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "ids"
