"""The service key that callers of the internal API (the workers) must present."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from orders.errors import InternalApiDisabled, ServiceKeyRequired

SERVICE_KEY_HEADER = "X-Service-Key"


def require_service_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: the request carries the configured service key."""
    configured = connection.app.state.settings.service_key
    if not configured:
        raise InternalApiDisabled()
    presented = connection.headers.get(SERVICE_KEY_HEADER)
    if presented is None:
        raise ServiceKeyRequired(f"Send the service key in the {SERVICE_KEY_HEADER} header.")
    # Constant time, so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(presented.encode(), configured.encode()):
        raise ServiceKeyRequired(f"The key in the {SERVICE_KEY_HEADER} header is not valid.")
