"""`POST /v1/books` as multipart/form-data, with and without a cover file."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import assert_problem, book_payload, count_books
from tests.covers.conftest import COVER_MAX_BYTES, IMAGES, multipart, png_image, stored_image
from tests.fake_cloudinary import Failure, FakeCloudinary


async def post_form(
    client: httpx.AsyncClient, cover: bytes | None = None, **overrides: Any
) -> httpx.Response:
    fields = [
        (name, None, str(value).encode()) for name, value in book_payload(**overrides).items()
    ]
    # Without a cover, the form has the blank file input that browsers send.
    cover_part = ("cover", "cover.jpg" if cover is not None else "", cover or b"")
    return await client.post("/v1/books", **multipart(*fields, cover_part))


class TestCreateBookFromForm:
    async def test_without_cover(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary
    ) -> None:
        response = await post_form(client, title="  Dune ")
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"] == f"/v1/books/{body['id']}"
        assert body["title"] == "Dune"
        assert body["price"] == "19.99"
        assert body["image"] is None
        assert fake_cloudinary.uploads == []

    @pytest.mark.parametrize(("sent", "stock"), [("7", 7), ("0", 0), ("", None)])
    async def test_stock_is_a_form_field_and_blank_means_untracked(
        self, client: httpx.AsyncClient, sent: str, stock: int | None
    ) -> None:
        response = await post_form(client, stock=sent)
        assert response.status_code == 201, response.text
        assert response.json()["stock"] == stock
        assert (await client.get(response.headers["location"])).json()["stock"] == stock

    @pytest.mark.parametrize(("sent", "copies"), [("3", 3), ("0", 0), ("", None)])
    async def test_copies_total_is_a_form_field_and_blank_means_not_lendable(
        self, client: httpx.AsyncClient, sent: str, copies: int | None
    ) -> None:
        response = await post_form(client, copies_total=sent)
        assert response.status_code == 201, response.text
        body = (await client.get(response.headers["location"])).json()
        assert (body["copies_total"], body["copies_available"]) == (copies, copies)

    @pytest.mark.parametrize(
        ("fields", "field"),
        [({"copies_total": "-1"}, "copies_total"), ({"copies_available": "2"}, "copies_available")],
    )
    async def test_rejects_bad_copies_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fields: dict[str, str],
        field: str,
    ) -> None:
        problem = assert_problem(await post_form(client, **fields), 422)
        assert [error["field"] for error in problem["errors"]] == [field]
        assert count_books(db) == 0

    @pytest.mark.parametrize("extension", ["jpg", "png", "webp"])
    async def test_with_cover(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        extension: str,
    ) -> None:
        response = await post_form(client, cover=IMAGES[extension])
        assert response.status_code == 201, response.text
        [upload] = fake_cloudinary.uploads
        assert upload.data == IMAGES[extension]
        image = {"url": upload.secure_url, "public_id": upload.public_id}
        assert response.json()["image"] == image
        assert stored_image(db, response.json()["id"]) == image

    @pytest.mark.parametrize(
        ("overrides", "fields"),
        [
            ({"title": "   "}, ["title"]),
            ({"price": "19.999"}, ["price"]),
            ({"price": "-1", "author": ""}, ["author", "price"]),
            ({"isbn": "123"}, ["isbn"]),
        ],
    )
    async def test_bad_fields_are_422_like_json_and_write_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        overrides: dict[str, Any],
        fields: list[str],
    ) -> None:
        response = await post_form(client, cover=png_image(), **overrides)
        problem = assert_problem(response, 422)
        assert sorted(error["field"] for error in problem["errors"]) == fields
        as_json = assert_problem(
            await client.post("/v1/books", json=book_payload(**overrides)), 422
        )
        assert problem["errors"] == as_json["errors"]
        assert count_books(db) == 0
        assert fake_cloudinary.uploads == []

    @pytest.mark.parametrize("stock", ["-1", "many", "2.5", "true", "2147483648"])
    async def test_bad_stock_is_422_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        stock: str,
    ) -> None:
        problem = assert_problem(await post_form(client, cover=png_image(), stock=stock), 422)
        assert [error["field"] for error in problem["errors"]] == ["stock"]
        assert count_books(db) == 0
        assert fake_cloudinary.uploads == []

    async def test_missing_fields_are_listed(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        response = await client.post(
            "/v1/books", data={"title": "Dune"}, files={"cover": ("c.png", png_image())}
        )
        problem = assert_problem(response, 422)
        assert {error["field"] for error in problem["errors"]} == {
            "author",
            "description",
            "price",
        }
        assert count_books(db) == 0

    async def test_cover_sent_as_text_is_422(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        fields = [(name, None, str(value).encode()) for name, value in book_payload().items()]
        response = await client.post("/v1/books", **multipart(*fields, ("cover", None, b"x")))
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["cover"]
        assert count_books(db) == 0

    async def test_cover_that_is_not_an_image_is_415(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
    ) -> None:
        assert_problem(await post_form(client, cover=b"%PDF-1.7 not an image"), 415)
        assert count_books(db) == 0
        assert fake_cloudinary.uploads == []

    async def test_cover_too_large_is_413(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
    ) -> None:
        cover = png_image().ljust(COVER_MAX_BYTES + 1, b"\x00")
        assert_problem(await post_form(client, cover=cover), 413)
        assert count_books(db) == 0
        assert fake_cloudinary.uploads == []

    @pytest.mark.parametrize("failure", [Failure.HTTP_500, Failure.ERROR_JSON])
    async def test_image_service_failure_is_502_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        failure: Failure,
    ) -> None:
        fake_cloudinary.failure = failure
        assert_problem(await post_form(client, cover=png_image()), 502)
        assert count_books(db) == 0

    async def test_without_cloudinary_a_cover_is_501_but_a_plain_form_works(
        self, app_with: Any, db: psycopg.Connection[Any]
    ) -> None:
        async with app_with() as client:
            assert_problem(await post_form(client, cover=png_image()), 501)
            assert count_books(db) == 0
            assert (await post_form(client)).status_code == 201
        assert count_books(db) == 1

    async def test_urlencoded_form_is_415(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any]
    ) -> None:
        problem = assert_problem(await client.post("/v1/books", data=book_payload()), 415)
        assert "application/json or multipart/form-data" in problem["detail"]
        assert count_books(db) == 0


class TestOpenApi:
    async def test_create_documents_json_and_multipart_bodies(
        self, client: httpx.AsyncClient
    ) -> None:
        spec = (await client.get("/openapi.json")).json()
        create = spec["paths"]["/v1/books"]["post"]
        content = create["requestBody"]["content"]
        assert list(content) == ["application/json", "multipart/form-data"]
        assert set(content["application/json"]["schema"]["required"]) == {
            "title",
            "author",
            "description",
            "price",
        }
        form = content["multipart/form-data"]["schema"]
        assert form["properties"]["cover"]["anyOf"][0]["contentMediaType"] == (
            "application/octet-stream"
        )
        assert {"413", "415", "422", "501", "502"} <= create["responses"].keys()
        assert "$ref" not in str(content)

    async def test_cover_endpoints_are_documented(self, client: httpx.AsyncClient) -> None:
        spec = (await client.get("/openapi.json")).json()
        cover = spec["paths"]["/v1/books/{book_id}/cover"]
        put = cover["put"]
        assert (
            put["summary"]
            == "Upload or replace the cover image of a book (the old image is deleted)"
        )
        assert put["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == [
            "file"
        ]
        assert {"404", "413", "415", "422", "501", "502"} <= put["responses"].keys()
        assert cover["delete"]["summary"] == "Remove the cover image of a book"
        assert {"204", "404", "501"} <= cover["delete"]["responses"].keys()
