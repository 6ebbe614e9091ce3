"""The service key that callers of the internal API (workers, orders) must present."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from servicekit.service_key import SERVICE_KEY_HEADER, check_service_key

_service_key_header = APIKeyHeader(name=SERVICE_KEY_HEADER, auto_error=False)


async def require_service_key(
    request: Request, presented: Annotated[str | None, Depends(_service_key_header)]
) -> None:
    configured = request.app.state.settings.service_key
    check_service_key(
        configured=configured.get_secret_value() if configured else None, presented=presented
    )
