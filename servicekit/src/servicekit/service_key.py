"""The key that callers of the services' internal APIs (workers, relays) must present."""

from __future__ import annotations

import hmac

from servicekit.problems import ProblemError

SERVICE_KEY_HEADER = "X-Service-Key"


class ServiceKeyRequired(ProblemError):
    status, title, type = 401, "Unauthorized", "/problems/service-key-required"
    code = "SERVICE_KEY_REQUIRED"

    def __init__(self, detail: str) -> None:
        # RFC 9110 wants a challenge on every 401; FastAPI's API-key schemes use `APIKey`.
        super().__init__(detail, headers={"WWW-Authenticate": "APIKey"})


class InternalApiDisabled(ProblemError):
    status, title, type = 503, "Internal API disabled", "/problems/internal-api-disabled"
    code = "INTERNAL_API_DISABLED"

    def __init__(self) -> None:
        super().__init__(
            "The internal API is off because no service key is configured; set SERVICE_KEY."
        )


def check_service_key(*, configured: str | None, presented: str | None) -> None:
    """Raise the problem the caller gets unless it presented the configured key."""
    if not configured:
        raise InternalApiDisabled()
    if presented is None:
        raise ServiceKeyRequired(f"Send the service key in the {SERVICE_KEY_HEADER} header.")
    # Constant time, so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(presented.encode(), configured.encode()):
        raise ServiceKeyRequired(f"The key in the {SERVICE_KEY_HEADER} header is not valid.")
