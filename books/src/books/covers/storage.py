"""Thin wrapper over the Cloudinary SDK: upload and destroy cover images.

The SDK is configured per call from our settings instead of through its global config, so
two apps with different settings (or none) can live in one process, as they do in tests.
The calls block; callers run them in a worker thread.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import cloudinary.exceptions
import cloudinary.uploader

from books.config import CloudinaryAccount, Settings
from books.errors import CoverStorageFailed

logger = logging.getLogger(__name__)


class CoverStorage:
    """Cover images in one Cloudinary folder."""

    def __init__(
        self,
        account: CloudinaryAccount,
        *,
        folder: str,
        timeout_s: float,
        upload_preset: str | None = None,
    ) -> None:
        self.account = account
        self.folder = folder.strip("/")
        self.timeout_s = timeout_s
        self.upload_preset = upload_preset

    @classmethod
    def from_settings(cls, settings: Settings) -> CoverStorage | None:
        """None when Cloudinary is not configured."""
        account = settings.cloudinary_account()
        if account is None:
            return None
        return cls(
            account,
            folder=settings.cover_folder,
            timeout_s=settings.cloudinary_timeout_s,
            upload_preset=settings.upload_preset,
        )

    def _options(self) -> dict[str, Any]:
        return {**self.account.sdk_options(), "timeout": self.timeout_s}

    def upload(self, data: bytes, *, extension: str) -> dict[str, str]:
        """Store the image under a fresh public id and return what `books.image` holds:
        `{"url", "public_id"}`. Raises CoverStorageFailed."""
        public_id = f"{self.folder}/{uuid.uuid4().hex}" if self.folder else uuid.uuid4().hex
        options = self._options()
        if self.upload_preset:
            options["upload_preset"] = self.upload_preset
        try:
            result = cloudinary.uploader.upload(
                data,
                public_id=public_id,
                filename=f"cover.{extension}",
                resource_type="image",
                overwrite=False,
                **options,
            )
        except cloudinary.exceptions.Error as exc:
            logger.warning("cover upload to Cloudinary failed: %s", exc)
            raise CoverStorageFailed from exc
        if not isinstance(result.get("secure_url"), str) or not result.get("public_id"):
            logger.warning("Cloudinary upload answered without secure_url/public_id: %r", result)
            raise CoverStorageFailed
        return {"url": result["secure_url"], "public_id": str(result["public_id"])}

    def destroy(self, public_id: str) -> None:
        """Delete an image; an image that is already gone counts as deleted."""
        try:
            result = cloudinary.uploader.destroy(
                public_id, resource_type="image", invalidate=True, **self._options()
            )
        except cloudinary.exceptions.Error as exc:
            logger.warning("deleting cover %s from Cloudinary failed: %s", public_id, exc)
            raise CoverStorageFailed from exc
        if result.get("result") not in ("ok", "not found"):
            logger.warning("Cloudinary did not delete cover %s: %r", public_id, result)
            raise CoverStorageFailed
