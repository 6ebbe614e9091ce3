"""Rate limits per caller, counted in Redis so every process of a service shares them.

The counting is the `limits` library's fixed window on its Redis storage: one round trip
per request (a Lua INCR + EXPIRE). A caller with an API key is counted by its key, at its
role's limit; a caller without one by its IP address, at the anonymous limit. A refusal
is a 429 problem with `Retry-After` and the `RateLimit-Policy`/`RateLimit` fields of
draft-ietf-httpapi-ratelimit-headers-11 (the structured syntax the drafts use since -08):
`RateLimit-Policy: "client";q=100;w=1`, `RateLimit: "client";r=0;t=1`. Allowed responses
carry no such fields: their remaining count would cost a second round trip.

When Redis does not answer, requests are let through (reads must still be served): each
such request counts in `rate_limit_unavailable_total`, and the outage is logged when it
starts and when it ends, not once per request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from prometheus_client import Counter

from servicekit.api_keys import ApiKey, Role
from servicekit.problems import ProblemError

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Redis answers within a millisecond when it is up; a hung Redis must not hang requests.
REDIS_TIMEOUT_S = 0.25

RATE_LIMITED = Counter(
    "rate_limited_requests_total", "Requests refused with 429, by class of caller", ["caller"]
)
LIMITS_UNAVAILABLE = Counter(
    "rate_limit_unavailable_total",
    "Requests let through unlimited because Redis (the limits' storage) did not answer",
)


class RateLimited(ProblemError):
    status, title, type = 429, "Too many requests", "/problems/rate-limited"
    code = "RATE_LIMITED"

    def __init__(self, caller: str, limit: RateLimitItem, retry_after_s: int) -> None:
        window_s = limit.get_expiry()
        super().__init__(
            f"The {caller} limit of {limit.amount} requests per {window_s} s is used up; "
            f"retry in {retry_after_s} s.",
            headers={
                "Retry-After": str(retry_after_s),
                "RateLimit-Policy": f'"{caller}";q={limit.amount};w={window_s}',
                "RateLimit": f'"{caller}";r=0;t={retry_after_s}',
            },
        )


@dataclass(frozen=True)
class RateLimitSettings:
    """One limit per class of caller, in the `limits` notation (`100/second`, `5/minute`)."""

    anonymous: str
    client: str
    desk: str
    admin: str

    def parsed(self) -> dict[str, RateLimitItem]:
        """The limits by class; a malformed one stops the service at startup."""
        return {
            caller: parse(getattr(self, caller))
            for caller in (ANONYMOUS, *(role.value for role in Role))
        }


class RateLimiter:
    def __init__(self, redis_url: str, settings: RateLimitSettings, *, service: str) -> None:
        self.limits = settings.parsed()
        self.storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix=f"ratelimit:{service}",
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.storage_down = False

    async def hit(self, *, key: ApiKey | None, client_host: str) -> None:
        """Count one request of this caller; RateLimited when it is one too many."""
        caller = key.role.value if key else ANONYMOUS
        limit = self.limits[caller]
        identity = f"key:{key.prefix}" if key else f"ip:{client_host}"
        try:
            allowed = await self.strategy.hit(limit, identity)
        except StorageError as error:
            LIMITS_UNAVAILABLE.inc()
            if not self.storage_down:
                self.storage_down = True
                logger.warning("rate limits not enforced, Redis does not answer: %s", error)
            return
        if self.storage_down:
            self.storage_down = False
            logger.info("rate limits enforced again, Redis answers")
        if not allowed:
            RATE_LIMITED.labels(caller).inc()
            raise RateLimited(caller, limit, await self._retry_after_s(limit, identity))

    async def _retry_after_s(self, limit: RateLimitItem, identity: str) -> int:
        """Seconds until the window ends (asked only on a refusal: a second round trip)."""
        try:
            reset_at = (await self.strategy.get_window_stats(limit, identity)).reset_time
        except StorageError:
            return limit.get_expiry()
        return max(1, math.ceil(reset_at - time.time()))
