"""The service key that callers of the internal API (workers, orders) must present."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from books.inventory.errors import InternalApiDisabled, ServiceKeyRequired

SERVICE_KEY_HEADER = "X-Service-Key"

_service_key_header = APIKeyHeader(name=SERVICE_KEY_HEADER, auto_error=False)


async def require_service_key(
    request: Request, presented: Annotated[str | None, Depends(_service_key_header)]
) -> None:
    configured = request.app.state.settings.service_key
    if configured is None or not configured.get_secret_value():
        raise InternalApiDisabled()
    if presented is None:
        raise ServiceKeyRequired(f"Send the service key in the {SERVICE_KEY_HEADER} header.")
    # Constant time, so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(presented.encode(), configured.get_secret_value().encode()):
        raise ServiceKeyRequired(f"The key in the {SERVICE_KEY_HEADER} header is not valid.")
