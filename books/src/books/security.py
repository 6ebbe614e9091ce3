"""Who may call what: the service key of the internal API (workers, orders), and the API
keys and rate limits of the public one (the mechanism is servicekit's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from servicekit.access import Gate, is_public_path
from servicekit.api_keys import ApiKey, Role, authorize
from servicekit.service_key import SERVICE_KEY_HEADER, check_service_key

_service_key_header = APIKeyHeader(name=SERVICE_KEY_HEADER, auto_error=False)
# Declares the bearer scheme in the OpenAPI document, on the operations that need a key;
# the key itself was checked by `admit`.
_bearer = HTTPBearer(
    scheme_name="bearerAuth",
    auto_error=False,
    description="An API key: `Authorization: Bearer bsk_…`",
)


async def require_service_key(
    request: Request, presented: Annotated[str | None, Depends(_service_key_header)]
) -> None:
    configured = request.app.state.settings.service_key
    check_service_key(
        configured=configured.get_secret_value() if configured else None, presented=presented
    )


async def admit(request: Request) -> None:
    """Every request to the public API: its key, if any, found; its rate limit counted."""
    if not is_public_path(request.scope["path"]):
        return
    gate: Gate = request.app.state.gate
    request.state.api_key = await gate.admit(
        authorization=request.headers.get("authorization"),
        client_host=request.client.host if request.client else "unknown",
    )


def requires(allowed: frozenset[Role]) -> Any:
    """Dependency: the caller's key has one of the `allowed` roles (401/403 otherwise)."""

    async def caller(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiKey:
        return authorize(getattr(request.state, "api_key", None), allowed)

    return Depends(caller)
