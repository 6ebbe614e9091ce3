"""Cover rules: which images are accepted, when they are uploaded, and which get deleted."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated, Any

import filetype
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from books.catalog.models import Book
from books.catalog.schemas import BookCreate
from books.catalog.service import CatalogService, CatalogServiceDep
from books.config import Settings
from books.covers.storage import CoverStorage
from books.db import SessionDep
from books.errors import (
    BookNotFound,
    CoverStorageFailed,
    CoverStorageNotConfigured,
    UnsupportedMediaType,
)
from books.metrics import COVER_UPLOADS
from servicekit.outbox import add_event

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


COVER_DISCARDED = "cover.discarded"


class UploadRollback:
    """Uploads to delete again if the request's transaction rolls back.

    Images that a committed change replaced are deleted by a worker instead, through the
    outbox. An upload whose row never committed has no outbox row to carry it, so it is
    deleted here, best effort: a leftover image costs storage, never correctness.
    """

    def __init__(self, storage: CoverStorage | None) -> None:
        self.storage = storage
        self.uploaded: list[str] = []

    async def undo(self) -> None:
        if self.storage is None:
            return
        for public_id in self.uploaded:
            try:
                await run_in_threadpool(self.storage.destroy, public_id)
            except Exception:
                logger.exception(
                    "could not delete cover image %s; it stays in Cloudinary", public_id
                )


class CoverService:
    def __init__(
        self,
        catalog: CatalogService,
        session: AsyncSession,
        storage: CoverStorage | None,
        rollback: UploadRollback,
        *,
        max_bytes: int,
    ) -> None:
        self.catalog = catalog
        self.session = session
        self.storage = storage
        self.rollback = rollback
        self.max_bytes = max_bytes

    async def replace_cover(self, *, book_id: int, data: bytes) -> Book:
        """Upload first, before any SQL: the request's transaction (and its pooled
        connection) starts only once Cloudinary has answered, however slowly. A book found
        missing then gets its upload undone (`UploadRollback`)."""
        storage = self._configured_storage()
        image = await self._upload(storage, data, image_extension(data))
        replaced = await self.catalog.books.replace_image(book_id=book_id, image=image)
        if replaced is None:
            raise BookNotFound(book_id)
        book, previous = replaced
        await self._discard(previous)
        return book

    async def remove_cover(self, *, book_id: int) -> None:
        self._configured_storage()
        replaced = await self.catalog.books.replace_image(book_id=book_id, image=None)
        if replaced is None:
            raise BookNotFound(book_id)
        await self._discard(replaced[1])

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
        self.rollback.uploaded.append(image["public_id"])
        return image

    async def _discard(self, previous: dict[str, Any] | None) -> None:
        """The replaced image is deleted by a worker once this transaction commits."""
        if previous and previous.get("public_id"):
            await add_event(
                self.session, topic=COVER_DISCARDED, payload={"public_id": previous["public_id"]}
            )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_cover_storage(request: Request) -> CoverStorage | None:
    return CoverStorage.from_settings(_settings(request))


CoverStorageDep = Annotated[CoverStorage | None, Depends(get_cover_storage)]


async def get_upload_rollback(storage: CoverStorageDep) -> AsyncIterator[UploadRollback]:
    """Request-scoped, so it ends after the session dependency has committed or rolled back
    (a failed commit reaches it as the exception)."""
    rollback = UploadRollback(storage)
    try:
        yield rollback
    except BaseException:
        await rollback.undo()
        raise


async def get_cover_service(
    request: Request,
    catalog: CatalogServiceDep,
    session: SessionDep,
    storage: CoverStorageDep,
    rollback: Annotated[UploadRollback, Depends(get_upload_rollback, scope="request")],
) -> CoverService:
    return CoverService(
        catalog, session, storage, rollback, max_bytes=_settings(request).cover_max_bytes
    )


CoverServiceDep = Annotated[CoverService, Depends(get_cover_service)]
