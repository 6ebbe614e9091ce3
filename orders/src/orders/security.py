"""The service key that callers of the internal API (the workers) must present."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from servicekit.service_key import SERVICE_KEY_HEADER, check_service_key


def require_service_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: the request carries the configured service key."""
    check_service_key(
        configured=connection.app.state.settings.service_key,
        presented=connection.headers.get(SERVICE_KEY_HEADER),
    )
