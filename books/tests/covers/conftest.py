"""Cover tests run the books app with Cloudinary pointed at the local fake server."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from books.app import create_app
from books.config import Settings
from books.db import close_databases
from tests.conftest import client_for
from tests.fake_cloudinary import FakeCloudinary

COVER_MAX_BYTES = 100_000
NO_CLOUDINARY: dict[str, Any] = {
    "CLOUDINARY_URL": None,
    "CLOUDINARY_CLOUD_NAME": None,
    "CLOUDINARY_API_KEY": None,
    "CLOUDINARY_API_SECRET": None,
    "UPLOAD_PRESET": None,
}


def png_image(width: int = 1, height: int = 1) -> bytes:
    """A valid RGB PNG of one grey colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg_image() -> bytes:
    """The start of a JFIF file: enough for content sniffing, which is all that reads it."""
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return (
        b"\xff\xd8\xff\xe0" + struct.pack(">H", len(jfif) + 2) + jfif + b"\x00" * 64 + b"\xff\xd9"
    )


def webp_image() -> bytes:
    """A lossless WebP container with a tiny VP8L chunk."""
    vp8l = b"\x2f\x00\x00\x00\x00\x07\x00\x00\x00"
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l + b"\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + body


IMAGES = {"jpg": jpeg_image(), "png": png_image(), "webp": webp_image()}


def cover_files(data: bytes, filename: str = "cover.png") -> dict[str, Any]:
    return {"file": (filename, data, "application/octet-stream")}


def multipart(*parts: tuple[str, str | None, bytes]) -> dict[str, Any]:
    """`content` and `headers` for a multipart body of (name, filename or None, value)
    parts, written out by hand for what httpx will not send (e.g. a blank file input)."""
    boundary = "bookstore-test-boundary"
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    return {
        "content": body + f"--{boundary}--\r\n".encode(),
        "headers": {"content-type": f"multipart/form-data; boundary={boundary}"},
    }


def uploads_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("books_cover_uploads_total", {"outcome": outcome}) or 0.0


def stored_image(db: psycopg.Connection[Any], book_id: int) -> Any:
    row = db.execute("SELECT image FROM books WHERE id = %s", (book_id,)).fetchone()
    assert row is not None
    return row[0]


def book_row(db: psycopg.Connection[Any], book_id: int) -> tuple[Any, ...]:
    row = db.execute("SELECT * FROM books WHERE id = %s", (book_id,)).fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture(scope="session")
def fake_cloudinary_server() -> Iterator[FakeCloudinary]:
    with FakeCloudinary().running() as fake:
        yield fake


@pytest.fixture
def fake_cloudinary(fake_cloudinary_server: FakeCloudinary) -> Iterator[FakeCloudinary]:
    fake_cloudinary_server.reset()
    yield fake_cloudinary_server
    fake_cloudinary_server.reset()


def covers_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        **NO_CLOUDINARY,
        "database_url": database_url,
        "cover_max_bytes": COVER_MAX_BYTES,
        "cloudinary_timeout_s": 1.0,
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="session")
async def covers_app(
    books_database_url: str, fake_cloudinary_server: FakeCloudinary
) -> AsyncIterator[FastAPI]:
    app = create_app(
        covers_settings(books_database_url, CLOUDINARY_URL=fake_cloudinary_server.cloudinary_url())
    )
    yield app
    await close_databases(app)


@pytest.fixture
async def client(covers_app: FastAPI, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The books API with covers enabled, as its admin calls it (make_book uses it too)."""
    async with client_for(covers_app, admin_key) as client:
        yield client


@pytest.fixture
async def app_with(books_database_url: str, admin_key: str) -> AsyncIterator[Any]:
    """Factory: another books app on the same database with other cover settings."""
    apps: list[FastAPI] = []

    def make(**overrides: Any) -> httpx.AsyncClient:
        app = create_app(covers_settings(books_database_url, **overrides))
        apps.append(app)
        return client_for(app, admin_key)

    yield make
    for app in apps:
        await close_databases(app)
