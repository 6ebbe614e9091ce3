"""Cover rules: which images are accepted, when they are uploaded, and which get deleted."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated, Any

import filetype
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from books.catalog.models import Book
from books.catalog.schemas import BookCreate
from books.catalog.service import CatalogService, CatalogServiceDep
from books.config import Settings
from books.covers.storage import CoverStorage
from books.errors import (
    BookNotFound,
    CoverStorageFailed,
    CoverStorageNotConfigured,
    UnsupportedMediaType,
)
from books.metrics import COVER_UPLOADS

logger = logging.getLogger(__name__)

# Detected MIME type -> file extension given to Cloudinary.
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
ACCEPTED_FORMATS = ("JPEG", "PNG", "WebP")


class CoverUploadOutcome(StrEnum):
    SUCCESS = "success"
    REJECTED = "rejected"
    FAILED = "failed"


def count_upload(outcome: CoverUploadOutcome) -> None:
    COVER_UPLOADS.labels(outcome=outcome.value).inc()


def image_extension(data: bytes) -> str:
    """The extension of a JPEG, PNG or WebP image, judged from its bytes, not its name."""
    kind = filetype.image_match(data) if data else None
    extension = _EXTENSIONS.get(kind.mime) if kind is not None else None
    if extension is None:
        count_upload(CoverUploadOutcome.REJECTED)
        raise UnsupportedMediaType(
            f"Covers must be {', '.join(ACCEPTED_FORMATS[:-1])} or {ACCEPTED_FORMATS[-1]} "
            f"images; the file sent is {kind.mime if kind is not None else 'not one of them'}."
        )
    return extension


async def discard_image(storage: CoverStorage, public_id: str) -> None:
    """Best effort: a leftover image costs storage, never correctness."""
    try:
        await run_in_threadpool(storage.destroy, public_id)
    except Exception:
        logger.exception("could not delete cover image %s; it stays in Cloudinary", public_id)


class CoverCleanup:
    """Images to delete once the request's transaction has ended: the new upload when it
    rolled back, the replaced cover when it committed."""

    def __init__(self, storage: CoverStorage | None) -> None:
        self.storage = storage
        self.on_rollback: list[str] = []
        self.on_commit: list[str] = []

    async def settle(self, *, committed: bool) -> None:
        if self.storage is None:
            return
        for public_id in self.on_commit if committed else self.on_rollback:
            await discard_image(self.storage, public_id)


class CoverService:
    def __init__(
        self,
        catalog: CatalogService,
        storage: CoverStorage | None,
        cleanup: CoverCleanup,
        *,
        max_bytes: int,
    ) -> None:
        self.catalog = catalog
        self.storage = storage
        self.cleanup = cleanup
        self.max_bytes = max_bytes

    async def replace_cover(self, *, book_id: int, data: bytes) -> Book:
        storage = self._configured_storage()
        extension = image_extension(data)
        await self.catalog.get_book(book_id=book_id)
        image = await self._upload(storage, data, extension)
        replaced = await self.catalog.books.replace_image(book_id=book_id, image=image)
        if replaced is None:
            raise BookNotFound(book_id)
        book, previous = replaced
        self._delete_after_commit(previous)
        return book

    async def remove_cover(self, *, book_id: int) -> None:
        self._configured_storage()
        replaced = await self.catalog.books.replace_image(book_id=book_id, image=None)
        if replaced is None:
            raise BookNotFound(book_id)
        self._delete_after_commit(replaced[1])

    async def create_book(self, *, data: BookCreate, cover: bytes | None) -> Book:
        """Upload the cover first, so a failing image service leaves no row behind."""
        if cover is None:
            return await self.catalog.create_book(data=data)
        storage = self._configured_storage()
        image = await self._upload(storage, cover, image_extension(cover))
        return await self.catalog.create_book(data=data, image=image)

    def _configured_storage(self) -> CoverStorage:
        if self.storage is None:
            raise CoverStorageNotConfigured
        return self.storage

    async def _upload(self, storage: CoverStorage, data: bytes, extension: str) -> dict[str, str]:
        try:
            image = await run_in_threadpool(storage.upload, data, extension=extension)
        except CoverStorageFailed:
            count_upload(CoverUploadOutcome.FAILED)
            raise
        count_upload(CoverUploadOutcome.SUCCESS)
        self.cleanup.on_rollback.append(image["public_id"])
        return image

    def _delete_after_commit(self, previous: dict[str, Any] | None) -> None:
        if previous and previous.get("public_id"):
            self.cleanup.on_commit.append(str(previous["public_id"]))


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_cover_storage(request: Request) -> CoverStorage | None:
    return CoverStorage.from_settings(_settings(request))


CoverStorageDep = Annotated[CoverStorage | None, Depends(get_cover_storage)]


async def get_cover_cleanup(storage: CoverStorageDep) -> AsyncIterator[CoverCleanup]:
    """Request-scoped, so it ends after the session dependency has committed or rolled back
    (a failed commit reaches it as the exception)."""
    cleanup = CoverCleanup(storage)
    try:
        yield cleanup
    except BaseException:
        await cleanup.settle(committed=False)
        raise
    await cleanup.settle(committed=True)


def get_cover_service(
    request: Request,
    catalog: CatalogServiceDep,
    storage: CoverStorageDep,
    cleanup: Annotated[CoverCleanup, Depends(get_cover_cleanup, scope="request")],
) -> CoverService:
    return CoverService(catalog, storage, cleanup, max_bytes=_settings(request).cover_max_bytes)


CoverServiceDep = Annotated[CoverService, Depends(get_cover_service)]
