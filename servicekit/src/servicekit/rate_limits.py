"""Rate limits per caller, counted in Redis so every process of a service shares them.

A caller with an API key is counted by its key, at its role's limit; a caller without
one by its IP address, at the anonymous limit. Each limit is a fixed window that starts
at the caller's first request (the `limits` library's notation and keys: `100/second`,
`5/minute`). A refusal is a 429 problem with `Retry-After` and the `RateLimit-Policy`/
`RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-11 (the structured syntax the
drafts use since -08): `RateLimit-Policy: "client";q=100;w=1`, `RateLimit: "client";r=0;t=1`.
Allowed responses carry no such fields: each process only knows its own share.

Counting every request in Redis cost one round trip per request, a sixth of the CPU of
a catalog read. A process therefore claims a caller's requests in batches (`Lease`): one
atomic `INCRBY` takes up to a hundredth of the limit from the window's count and answers
how long the window has left, and the process admits that many requests of that caller
without asking again until the batch is spent or the window ends. No window admits more
than its limit (a batch is only spent inside the window it was taken from, and the last
batch is only what was left); a process can hold back at most one unspent batch, so a
caller may be refused up to a hundredth of its limit early per other process. Limits
under 200 are claimed one request at a time: exact, as before. Once a window's count is
used up, the process refuses that caller locally until the window ends. One claim per
caller is in flight at a time: the requests that arrive meanwhile wait for its batch.
The `limits` library counts one request per round trip and has no such claim, hence
the script here.

When Redis does not answer, requests are let through (reads must still be served): each
such request counts in `rate_limit_unavailable_total`, and the outage is logged when it
starts and when it ends, not once per request. After a failed claim the process lets
requests through without asking Redis for `STORAGE_RETRY_S`: asking on every request
made each one wait for Redis's timeout when Redis hung (a quarter of a second), and
spent a connection attempt per request when it was down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from servicekit.api_keys import ApiKey, Role
from servicekit.problems import ProblemError

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Redis answers within a millisecond when it is up; a hung Redis must not hang requests.
REDIS_TIMEOUT_S = 0.25
# After a failed claim, how long requests go through unlimited before Redis is asked again.
STORAGE_RETRY_S = 1.0

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


@dataclass
class Lease:
    """Requests of one caller this process may admit without asking Redis, until `deadline`
    (`time.monotonic()`): the rest of a claimed batch. `last` when the batch held what was
    left of the window's count, so that once it is spent the caller is refused."""

    left: int
    deadline: float
    last: bool

    def usable(self) -> bool:
        return time.monotonic() < self.deadline


# One atomic step of a fixed window: add the batch to the window's count (the window
# starts with its first count), and answer the new count and the window's milliseconds
# left. The key and its expiry are the ones the `limits` library's fixed window uses.
CLAIM = """
local count = redis.call("INCRBY", KEYS[1], ARGV[2])
if redis.call("PTTL", KEYS[1]) < 0 then
    redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return {count, redis.call("PTTL", KEYS[1])}
"""
# A batch is at most this share of a limit (see the module's docstring).
BATCH_SHARE = 100
# Past this many leases a claim drops the ones whose window has ended.
LEASES_KEPT = 10_000


class RateLimiter:
    def __init__(
        self,
        redis_url: str,
        settings: RateLimitSettings,
        *,
        service: str,
        storage_retry_s: float = STORAGE_RETRY_S,
    ) -> None:
        self.limits = settings.parsed()
        self.redis = Redis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.claim_script = self.redis.register_script(CLAIM)
        self.key_prefix = f"ratelimit:{service}"
        self.leases: dict[str, Lease] = {}
        self.claims: dict[str, asyncio.Future[None]] = {}
        self.storage_down = False
        self.storage_retry_s = storage_retry_s
        # After a failed claim: when Redis may be asked again (`time.monotonic()`).
        self.storage_retry_at = 0.0

    async def hit(self, *, key: ApiKey | None, client_host: str) -> None:
        """Count one request of this caller; RateLimited when it is one too many."""
        caller = key.role.value if key else ANONYMOUS
        limit = self.limits[caller]
        identity = f"key:{key.prefix}" if key else f"ip:{client_host}"
        counter = f"{self.key_prefix}:{limit.key_for(identity)}"
        while True:
            lease = self.leases.get(counter)
            if lease is not None and lease.usable():
                if lease.left > 0:
                    lease.left -= 1
                    return
                if lease.last:
                    RATE_LIMITED.labels(caller).inc()
                    retry_after_s = max(1, math.ceil(lease.deadline - time.monotonic()))
                    raise RateLimited(caller, limit, retry_after_s)
            if time.monotonic() < self.storage_retry_at:
                LIMITS_UNAVAILABLE.inc()
                return
            try:
                await self._claim(counter, limit)
            except (RedisError, OSError) as error:
                LIMITS_UNAVAILABLE.inc()
                self.storage_retry_at = time.monotonic() + self.storage_retry_s
                if not self.storage_down:
                    self.storage_down = True
                    logger.warning("rate limits not enforced, Redis does not answer: %s", error)
                return
            if self.storage_down:
                self.storage_down = False
                logger.info("rate limits enforced again, Redis answers")

    async def _claim(self, counter: str, limit: RateLimitItem) -> None:
        """A new lease for `counter`; the requests that need one while a claim is in flight
        wait for that claim instead of sending their own."""
        pending = self.claims.get(counter)
        if pending is None:
            pending = asyncio.ensure_future(self._claim_batch(counter, limit))
            self.claims[counter] = pending
        # Shielded: a request that goes away does not cancel the others' claim.
        await asyncio.shield(pending)

    async def _claim_batch(self, counter: str, limit: RateLimitItem) -> None:
        """Leaves `claims` before it is done: a done claim left there would be awaited
        without yielding by a request that runs before the claim's done callbacks, and
        that request would spin in `hit` for ever."""
        batch = max(1, limit.amount // BATCH_SHARE)
        asked_at = time.monotonic()
        try:
            count, window_left_ms = await self.claim_script(
                keys=[counter], args=[limit.get_expiry() * 1000, batch]
            )
        finally:
            del self.claims[counter]
        granted = max(0, min(batch, limit.amount - (count - batch)))
        if len(self.leases) >= LEASES_KEPT:
            self.leases = {name: kept for name, kept in self.leases.items() if kept.usable()}
        # Timed from before the call: the window ends no earlier than this deadline.
        self.leases[counter] = Lease(
            left=granted, deadline=asked_at + window_left_ms / 1000, last=granted < batch
        )
