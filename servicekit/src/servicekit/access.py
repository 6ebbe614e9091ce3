"""The door of the public API, the same in every service: who is calling (their API key,
if they sent one) and whether they are within their rate limit. Each service calls
`Gate.admit` once per request to a public path, before its handler, and keeps the key on
the request for the endpoint's role check (`api_keys.authorize`).

Reads without a key cost no database query; a request with a key costs one indexed
query on the service's read pool; every public request costs one Redis round trip. The
internal API (service key) and the system endpoints (health, metrics) are not public
paths: neither limited nor keyed here.
"""

from __future__ import annotations

from typing import Protocol

from servicekit.api_keys import ApiKey, ApiKeyInvalid, find_key
from servicekit.database import ReadPool
from servicekit.rate_limits import RateLimiter, RateLimitSettings

PUBLIC_PATH_PREFIX = "/v1/"


class Gate:
    def __init__(self, reads: ReadPool, limiter: RateLimiter | None) -> None:
        self.reads = reads
        self.limiter = limiter

    async def admit(self, *, authorization: str | None, client_host: str) -> ApiKey | None:
        """The caller's key (None without one), once counted against its limit.

        A request with a bad key is counted as anonymous (by its IP) before it is refused,
        so guessing keys spends the guesser's own budget.
        """
        key = await find_key(self.reads, authorization) if authorization is not None else None
        if self.limiter is not None:
            await self.limiter.hit(key=key, client_host=client_host)
        if authorization is not None and key is None:
            raise ApiKeyInvalid()
        return key


class GateSettings(Protocol):
    """The settings every service has for its gate (read-only, as frozen settings are)."""

    @property
    def redis_url(self) -> str: ...
    @property
    def rate_limit_redis_url(self) -> str | None: ...
    @property
    def rate_limits_enabled(self) -> bool: ...
    @property
    def rate_limit_anonymous(self) -> str: ...
    @property
    def rate_limit_client(self) -> str: ...
    @property
    def rate_limit_desk(self) -> str: ...
    @property
    def rate_limit_admin(self) -> str: ...


def create_gate(reads: ReadPool, settings: GateSettings, *, service: str) -> Gate:
    """A service's gate: keys looked up through `reads` (the service's database), limits
    counted in Redis (the queues' own unless `rate_limit_redis_url` says otherwise)
    unless turned off."""
    if not settings.rate_limits_enabled:
        return Gate(reads, None)
    limits = RateLimitSettings(
        anonymous=settings.rate_limit_anonymous,
        client=settings.rate_limit_client,
        desk=settings.rate_limit_desk,
        admin=settings.rate_limit_admin,
    )
    redis_url = settings.rate_limit_redis_url or settings.redis_url
    return Gate(reads, RateLimiter(redis_url, limits, service=service))


def is_public_path(path: str) -> bool:
    return path.startswith(PUBLIC_PATH_PREFIX)
