"""Who may call what: the service key of the internal API (the workers), and the API keys
and rate limits of the public one (the mechanism is servicekit's).

Guards here are `async def` even when they await nothing: Litestar runs a plain `def`
guard in its thread pool, a thread hop on every request (about a sixth of the CPU of a
GET of an order, by py-spy)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.types import Guard

from servicekit.access import Gate, is_public_path
from servicekit.api_keys import ApiKey, Role, authorize
from servicekit.service_key import SERVICE_KEY_HEADER, check_service_key

BEARER_SCHEME = "bearerAuth"
# The `security` of an operation that needs an API key, and the scheme it names.
BEARER: list[SecurityRequirement] = [{BEARER_SCHEME: []}]
SECURITY_COMPONENTS = Components(
    security_schemes={
        BEARER_SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            description="An API key: `Authorization: Bearer bsk_…`",
        )
    }
)


async def require_service_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: the request carries the configured service key."""
    check_service_key(
        configured=connection.app.state.settings.service_key,
        presented=connection.headers.get(SERVICE_KEY_HEADER),
    )


async def admit(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of every request to the public API: its key, if any, found; its rate limit
    counted. App-level, so it runs before the guards of controllers and handlers."""
    if not is_public_path(connection.scope["path"]):
        return
    gate: Gate = connection.app.state.gate
    connection.state.api_key = await gate.admit(
        authorization=connection.headers.get("authorization"),
        client_host=connection.client.host if connection.client else "unknown",
    )


def requires(allowed: frozenset[Role]) -> Guard:
    """Guard: the caller's key has one of the `allowed` roles (401/403 otherwise)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        authorize(connection.state.get("api_key"), allowed)

    return guard


def caller(request: Request[Any, Any, Any]) -> ApiKey:
    """The key of a request that passed `requires`."""
    key: ApiKey = request.state.api_key
    return key
