"""`PUT` and `DELETE /v1/books/{id}/cover` with the real SDK against the fake Cloudinary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import ValidationError

from books.config import Settings
from tests.conftest import assert_problem, discarded_images
from tests.covers.conftest import (
    COVER_MAX_BYTES,
    IMAGES,
    book_row,
    cover_files,
    png_image,
    stored_image,
    uploads_counted,
)
from tests.fake_cloudinary import Failure, FakeCloudinary

Book = dict[str, Any]


@pytest.fixture
async def book(make_book: Any) -> Book:
    return await make_book()  # type: ignore[no-any-return]


async def put_cover(
    client: httpx.AsyncClient, book_id: int, data: bytes, **kw: Any
) -> httpx.Response:
    return await client.put(f"/v1/books/{book_id}/cover", files=cover_files(data, **kw))


@pytest.fixture
def failing_image_writes(books_database_url: str) -> Iterator[str]:
    """A trigger that makes any change of `books.image` fail in the database."""
    with psycopg.connect(books_database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_image() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'image writes refused for the test'; END $$"
        )
        yield "refuse_image"
        conn.execute("DROP FUNCTION refuse_image() CASCADE")


class TestPutCover:
    @pytest.mark.parametrize("extension", ["jpg", "png", "webp"])
    async def test_stores_each_accepted_format(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
        extension: str,
    ) -> None:
        data = IMAGES[extension]
        response = await put_cover(client, book["id"], data, filename="whatever.bin")
        assert response.status_code == 200, response.text
        [upload] = fake_cloudinary.uploads
        assert upload.data == data
        assert upload.filename == f"cover.{extension}"
        assert upload.public_id.startswith("bookstore/covers/")
        assert upload.params["overwrite"] == "0"
        assert "upload_preset" not in upload.params
        image = {"url": upload.secure_url, "public_id": upload.public_id}
        assert response.json()["image"] == image
        assert stored_image(db, book["id"]) == image

    async def test_each_upload_gets_a_fresh_public_id(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary, make_book: Any
    ) -> None:
        for _ in range(2):
            assert (await put_cover(client, (await make_book())["id"], png_image())).is_success
        assert len({upload.public_id for upload in fake_cloudinary.uploads}) == 2

    async def test_replacing_hands_the_old_image_to_the_workers(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
    ) -> None:
        first = (await put_cover(client, book["id"], png_image(1, 1))).json()["image"]
        second = (await put_cover(client, book["id"], png_image(2, 2))).json()["image"]
        assert discarded_images(db) == [first["public_id"]]
        assert fake_cloudinary.destroyed == []
        assert stored_image(db, book["id"]) == second

    @pytest.mark.parametrize("deleted", [False, True])
    async def test_missing_or_deleted_book_is_404_and_its_upload_undone(
        self,
        client: httpx.AsyncClient,
        fake_cloudinary: FakeCloudinary,
        book: Book,
        deleted: bool,
    ) -> None:
        """The upload comes first (no transaction waits on Cloudinary), so a missing book
        is found after it, and the image is deleted again."""
        book_id = book["id"] if deleted else book["id"] + 1
        if deleted:
            assert (await client.delete(f"/v1/books/{book_id}")).status_code == 200
        assert_problem(await put_cover(client, book_id, png_image()), 404)
        [upload] = fake_cloudinary.uploads
        assert fake_cloudinary.destroyed == [upload.public_id]

    async def test_no_transaction_is_open_while_cloudinary_answers(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
    ) -> None:
        """A slow Cloudinary must not hold a pooled connection idle in a transaction."""
        fake_cloudinary.failure = Failure.SLOW
        request = asyncio.create_task(put_cover(client, book["id"], png_image()))
        assert await asyncio.to_thread(fake_cloudinary.stalling.wait, 10)
        waiting = db.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state LIKE 'idle in transaction%'"
        ).fetchone()
        assert_problem(await request, 502)
        assert waiting == (0,)

    async def test_largest_allowed_file_is_accepted(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        data = png_image().ljust(COVER_MAX_BYTES, b"\x00")
        assert (await put_cover(client, book["id"], data)).status_code == 200
        assert fake_cloudinary.uploads[0].data == data

    async def test_too_large_file_is_413_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
    ) -> None:
        rejected = uploads_counted("rejected")
        before = book_row(db, book["id"])
        data = png_image().ljust(COVER_MAX_BYTES + 1, b"\x00")
        problem = assert_problem(await put_cover(client, book["id"], data), 413)
        assert str(COVER_MAX_BYTES) in problem["detail"]
        assert fake_cloudinary.uploads == []
        assert book_row(db, book["id"]) == before
        assert uploads_counted("rejected") == rejected + 1

    async def test_streamed_body_is_cut_off_at_the_limit(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        """Without Content-Length the body is counted as it arrives, not read whole first."""
        data = png_image().ljust(10 * COVER_MAX_BYTES, b"\x00")
        encoded = httpx.Request("PUT", "/", files=cover_files(data))
        body = encoded.read()
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            for start in range(0, len(body), 16_384):
                sent += 1
                yield body[start : start + 16_384]

        response = await client.put(
            f"/v1/books/{book['id']}/cover",
            content=chunks(),
            headers={"content-type": encoded.headers["content-type"]},
        )
        assert_problem(response, 413)
        assert sent < len(body) // 16_384 / 2
        assert fake_cloudinary.uploads == []

    async def test_text_file_named_jpg_is_415(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
    ) -> None:
        before = book_row(db, book["id"])
        response = await put_cover(client, book["id"], b"just some text\n", filename="cover.jpg")
        problem = assert_problem(response, 415)
        assert "JPEG, PNG or WebP" in problem["detail"]
        assert fake_cloudinary.uploads == []
        assert book_row(db, book["id"]) == before

    async def test_other_image_types_are_415(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
        problem = assert_problem(await put_cover(client, book["id"], gif), 415)
        assert "image/gif" in problem["detail"]
        assert fake_cloudinary.uploads == []

    @pytest.mark.parametrize(
        ("form", "field"),
        [
            ({"data": {"file": "not a file"}, "files": {"blank": ("", b"")}}, "file"),
            ({"data": {"other": "x"}, "files": {"image": ("a.png", b"x")}}, "file"),
            ({"data": {"caption": "x"}, "files": cover_files(png_image())}, "caption"),
        ],
    )
    async def test_bad_form_is_422_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
        form: dict[str, Any],
        field: str,
    ) -> None:
        before = book_row(db, book["id"])
        response = await client.put(f"/v1/books/{book['id']}/cover", **form)
        problem = assert_problem(response, 422)
        assert field in [error["field"] for error in problem["errors"]]
        assert {error["in"] for error in problem["errors"]} == {"body"}
        assert fake_cloudinary.uploads == []
        assert book_row(db, book["id"]) == before

    async def test_malformed_multipart_is_400(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        response = await client.put(
            f"/v1/books/{book['id']}/cover",
            content=b"not multipart at all",
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert_problem(response, 400)
        assert fake_cloudinary.uploads == []

    async def test_json_body_is_415(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        response = await client.put(f"/v1/books/{book['id']}/cover", json={"file": "x"})
        problem = assert_problem(response, 415)
        assert "multipart/form-data" in problem["detail"]

    @pytest.mark.parametrize("failure", list(Failure))
    async def test_image_service_failure_is_502_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
        failure: Failure,
    ) -> None:
        await put_cover(client, book["id"], png_image())
        before = book_row(db, book["id"])
        failed = uploads_counted("failed")
        fake_cloudinary.failure = failure
        problem = assert_problem(await put_cover(client, book["id"], IMAGES["jpg"]), 502)
        assert problem["type"] == "/problems/cover-storage-failed"
        assert book_row(db, book["id"]) == before
        assert len(fake_cloudinary.uploads) == 1
        assert fake_cloudinary.destroyed == []
        assert uploads_counted("failed") == failed + 1

    async def test_failed_database_write_deletes_the_new_upload(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
        failing_image_writes: str,
    ) -> None:
        db.execute(
            f"CREATE TRIGGER refuse BEFORE UPDATE ON books "
            f"FOR EACH ROW EXECUTE FUNCTION {failing_image_writes}()"
        )
        before = book_row(db, book["id"])
        assert_problem(await put_cover(client, book["id"], png_image()), 500)
        [upload] = fake_cloudinary.uploads
        assert fake_cloudinary.destroyed == [upload.public_id]
        assert book_row(db, book["id"]) == before

    async def test_failed_commit_deletes_the_new_upload_and_keeps_the_old(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
        failing_image_writes: str,
    ) -> None:
        old = (await put_cover(client, book["id"], png_image())).json()["image"]
        db.execute(
            f"CREATE CONSTRAINT TRIGGER refuse AFTER UPDATE ON books DEFERRABLE INITIALLY "
            f"DEFERRED FOR EACH ROW EXECUTE FUNCTION {failing_image_writes}()"
        )
        before = book_row(db, book["id"])
        assert_problem(await put_cover(client, book["id"], IMAGES["webp"]), 500)
        new = fake_cloudinary.uploads[-1].public_id
        assert fake_cloudinary.destroyed == [new]
        assert fake_cloudinary.images.keys() == {old["public_id"]}
        assert book_row(db, book["id"]) == before

    async def test_counts_successful_uploads(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        succeeded = uploads_counted("success")
        await put_cover(client, book["id"], png_image())
        assert uploads_counted("success") == succeeded + 1
        metrics = (await client.get("/metrics")).text
        assert 'books_cover_uploads_total{outcome="success"}' in metrics


class TestDeleteCover:
    async def test_removes_the_cover_and_hands_its_image_to_the_workers(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
    ) -> None:
        image = (await put_cover(client, book["id"], png_image())).json()["image"]
        response = await client.delete(f"/v1/books/{book['id']}/cover")
        assert response.status_code == 204
        assert response.content == b""
        assert stored_image(db, book["id"]) is None
        assert discarded_images(db) == [image["public_id"]]
        assert (await client.get(f"/v1/books/{book['id']}")).json()["image"] is None

    async def test_book_without_cover_is_204(
        self, client: httpx.AsyncClient, db: psycopg.Connection[Any], book: Book
    ) -> None:
        assert (await client.delete(f"/v1/books/{book['id']}/cover")).status_code == 204
        assert discarded_images(db) == []

    async def test_missing_book_is_404(
        self, client: httpx.AsyncClient, fake_cloudinary: FakeCloudinary
    ) -> None:
        assert_problem(await client.delete("/v1/books/999/cover"), 404)

    async def test_image_service_down_still_removes_the_cover(
        self,
        client: httpx.AsyncClient,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
    ) -> None:
        """The image is deleted later by a worker, which retries while Cloudinary is down."""
        image = (await put_cover(client, book["id"], png_image())).json()["image"]
        fake_cloudinary.failure = Failure.HTTP_500
        assert (await client.delete(f"/v1/books/{book['id']}/cover")).status_code == 204
        assert stored_image(db, book["id"]) is None
        assert discarded_images(db) == [image["public_id"]]


class TestCoversWithoutCloudinary:
    async def test_put_and_delete_are_501(
        self, app_with: Any, db: psycopg.Connection[Any], book: Book
    ) -> None:
        before = book_row(db, book["id"])
        async with app_with() as client:
            problem = assert_problem(await put_cover(client, book["id"], png_image()), 501)
            assert "CLOUDINARY_URL" in problem["detail"]
            assert_problem(await client.delete(f"/v1/books/{book['id']}/cover"), 501)
        assert book_row(db, book["id"]) == before

    @pytest.mark.parametrize(
        "url",
        ["https://key:s3cret-value@cloud", "cloudinary://key@cloud", "cloudinary://:s3cret-value@"],
    )
    def test_a_malformed_url_stops_startup_without_echoing_it(self, url: str) -> None:
        with pytest.raises(ValidationError) as raised:
            Settings(CLOUDINARY_URL=url)
        assert "cloudinary://key:secret@cloud_name" in str(raised.value)
        assert "s3cret-value" not in str(raised.value)

    async def test_three_variables_configure_it_too(
        self, app_with: Any, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        async with app_with(
            CLOUDINARY_CLOUD_NAME=fake_cloudinary.cloud_name,
            CLOUDINARY_API_KEY=fake_cloudinary.api_key,
            CLOUDINARY_API_SECRET=fake_cloudinary.api_secret,
            CLOUDINARY_UPLOAD_PREFIX=fake_cloudinary.url,
        ) as client:
            assert (await put_cover(client, book["id"], png_image())).status_code == 200
        assert len(fake_cloudinary.uploads) == 1


class TestCloudinaryRequests:
    async def test_upload_preset_is_sent_when_set(
        self, app_with: Any, fake_cloudinary: FakeCloudinary, book: Book
    ) -> None:
        async with app_with(
            CLOUDINARY_URL=fake_cloudinary.cloudinary_url(), UPLOAD_PRESET="bookstore_covers"
        ) as client:
            assert (await put_cover(client, book["id"], png_image())).status_code == 200
        assert fake_cloudinary.uploads[0].params["upload_preset"] == "bookstore_covers"

    async def test_wrong_secret_is_rejected_by_the_fake_and_is_502(
        self,
        app_with: Any,
        db: psycopg.Connection[Any],
        fake_cloudinary: FakeCloudinary,
        book: Book,
    ) -> None:
        before = book_row(db, book["id"])
        async with app_with(
            CLOUDINARY_URL=fake_cloudinary.cloudinary_url(api_secret="not-the-secret")
        ) as client:
            assert_problem(await put_cover(client, book["id"], png_image()), 502)
        assert fake_cloudinary.rejected_signatures == 1
        assert fake_cloudinary.uploads == []
        assert book_row(db, book["id"]) == before
