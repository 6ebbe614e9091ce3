"""Cover images that books no longer uses are deleted from Cloudinary, with retries.

The SDK reads its account from `CLOUDINARY_URL` (or `CLOUDINARY_CLOUD_NAME`,
`CLOUDINARY_API_KEY`, `CLOUDINARY_API_SECRET`), as books does.
"""

from __future__ import annotations

import logging
from typing import Any

import cloudinary.exceptions
import cloudinary.uploader
from pydantic import BaseModel, ConfigDict, Field

from workers.config import get_settings
from workers.errors import PermanentJobError
from workers.payloads import parse_payload

logger = logging.getLogger(__name__)

# Cloudinary's answers that a retry cannot change (bad request or credentials, no access).
REFUSALS = (
    cloudinary.exceptions.BadRequest,
    cloudinary.exceptions.AuthorizationRequired,
    cloudinary.exceptions.NotAllowed,
    cloudinary.exceptions.NotFound,
)


class CoverDiscarded(BaseModel):
    model_config = ConfigDict(extra="ignore")

    public_id: str = Field(min_length=1)


def delete_image(payload: dict[str, Any]) -> str:
    """Delete a discarded cover image; one that is already gone counts as deleted."""
    cover = parse_payload(CoverDiscarded, payload)
    try:
        result = cloudinary.uploader.destroy(
            cover.public_id,
            resource_type="image",
            invalidate=True,
            timeout=get_settings().cloudinary_timeout_s,
        )
    except REFUSALS as exc:
        raise PermanentJobError(f"Cloudinary refused to delete {cover.public_id}: {exc}") from exc
    outcome = result.get("result")
    if outcome not in ("ok", "not found"):
        # Any other answer (an error document, a transient failure) is worth another try.
        raise RuntimeError(f"Cloudinary did not delete {cover.public_id}: {result!r}")
    logger.info("cover image %s deleted (%s)", cover.public_id, outcome)
    return str(outcome)
