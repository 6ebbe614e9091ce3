"""Rate limits claimed in batches, against real Redis: two limiters stand for two
processes of one service sharing a count."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from prometheus_client import REGISTRY

from servicekit.rate_limits import RateLimited, RateLimiter, RateLimitSettings

MakeLimiter = Callable[[str], RateLimiter]


@pytest.fixture
def service() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make_limiter(redis_url: str, service: str) -> AsyncIterator[MakeLimiter]:
    """Limiters of one service (the same counts) with `limit` for anonymous callers."""
    made: list[RateLimiter] = []

    def make(limit: str) -> RateLimiter:
        settings = RateLimitSettings(anonymous=limit, client=limit, desk=limit, admin=limit)
        made.append(RateLimiter(redis_url, settings, service=service))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.redis.aclose()


@pytest.fixture
def window_count(redis_url: str, service: str) -> Callable[[], int | None]:
    """The count of the test caller's current window in Redis (None: no window)."""
    client = redis.Redis.from_url(redis_url)

    def count() -> int | None:
        keys = client.keys(f"ratelimit:{service}:*")
        assert len(keys) <= 1
        value = client.get(keys[0]) if keys else None
        return None if value is None else int(value)

    return count


async def hits(limiter: RateLimiter, times: int) -> list[bool]:
    """Whether each of `times` concurrent requests of one caller was admitted."""

    async def hit() -> bool:
        try:
            await limiter.hit(key=None, client_host="192.0.2.1")
        except RateLimited:
            return False
        return True

    return list(await asyncio.gather(*(hit() for _ in range(times))))


class TestBatches:
    async def test_a_big_limit_is_claimed_a_hundredth_at_a_time(
        self, make_limiter: MakeLimiter, window_count: Callable[[], int | None]
    ) -> None:
        limiter = make_limiter("1000/minute")
        for _ in range(25):
            await limiter.hit(key=None, client_host="192.0.2.1")
        assert window_count() == 30  # three claims of ten, not 25 round trips

    async def test_a_small_limit_is_counted_request_by_request(
        self, make_limiter: MakeLimiter, window_count: Callable[[], int | None]
    ) -> None:
        limiter = make_limiter("199/minute")
        for _ in range(7):
            await limiter.hit(key=None, client_host="192.0.2.1")
        assert window_count() == 7

    async def test_concurrent_requests_wait_for_one_claim(
        self, make_limiter: MakeLimiter, window_count: Callable[[], int | None]
    ) -> None:
        """Without one claim in flight per caller, 300 requests would each claim ten and
        use up the window's thousand after a hundred of them."""
        limiter = make_limiter("1000/minute")
        assert all(await hits(limiter, 300))
        assert window_count() == 300

    async def test_two_processes_never_admit_more_than_the_limit(
        self, make_limiter: MakeLimiter, window_count: Callable[[], int | None]
    ) -> None:
        one, two = make_limiter("500/minute"), make_limiter("500/minute")
        admitted = await asyncio.gather(hits(one, 350), hits(two, 350))
        total = sum(map(sum, admitted))
        # Each process may hold back at most one unspent batch of 5.
        assert 500 - 2 * 4 <= total <= 500
        assert (window_count() or 0) >= 500


# 64 callers on one limiter, each sleeping a millisecond between its requests: the timers
# of some wake them in the same turn of the event loop as a claim's answer, after the
# claim is done but before its done callbacks run, as requests arriving on sockets do.
BUSY_CALLERS = """
import asyncio, sys
from servicekit.rate_limits import RateLimited, RateLimiter, RateLimitSettings

async def main() -> None:
    limiter = RateLimiter(sys.argv[1], RateLimitSettings(*["1000/second"] * 4), service=sys.argv[2])

    async def caller() -> None:
        for _ in range(100):
            try:
                await limiter.hit(key=None, client_host="192.0.2.1")
            except RateLimited:
                pass
            await asyncio.sleep(0.001)

    await asyncio.gather(*(caller() for _ in range(64)))

asyncio.run(main())
"""


class TestBusyCallers:
    def test_requests_arriving_as_a_claim_ends_do_not_spin(
        self, redis_url: str, service: str
    ) -> None:
        """They once found the finished claim still registered, awaited it without
        yielding and spun in `hit` for ever, a CPU each; hence a process with a deadline."""
        finished = subprocess.run(
            [sys.executable, "-c", BUSY_CALLERS, redis_url, service], timeout=60, check=False
        )
        assert finished.returncode == 0


class TestUsedUpWindows:
    async def test_a_used_up_window_is_refused_without_asking_redis(
        self, make_limiter: MakeLimiter, redis_url: str, service: str
    ) -> None:
        """205 requests in batches of 2: the last batch is the one request left."""
        limiter = make_limiter("205/minute")
        assert sum(await hits(limiter, 210)) == 205
        redis.Redis.from_url(redis_url).delete(
            *redis.Redis.from_url(redis_url).keys(f"ratelimit:{service}:*")
        )
        with pytest.raises(RateLimited) as refused:
            await limiter.hit(key=None, client_host="192.0.2.1")
        retry_after = int(refused.value.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        assert refused.value.headers["RateLimit"] == f'"anonymous";r=0;t={retry_after}'

    async def test_a_batch_is_not_spent_after_its_window(
        self,
        make_limiter: MakeLimiter,
        window_count: Callable[[], int | None],
        redis_url: str,
        service: str,
    ) -> None:
        """The batch claimed in the first window has one request left; after the window
        the next request claims in a new one instead of spending it."""
        limiter = make_limiter("200/second")
        await limiter.hit(key=None, client_host="192.0.2.1")
        assert window_count() == 2
        client = redis.Redis.from_url(redis_url)
        (window,) = client.keys(f"ratelimit:{service}:*")
        await asyncio.sleep(client.pttl(window) / 1000 + 0.05)
        assert window_count() is None
        await limiter.hit(key=None, client_host="192.0.2.1")
        assert window_count() == 2

    async def test_another_caller_has_its_own_window(
        self, make_limiter: MakeLimiter, redis_url: str, service: str
    ) -> None:
        limiter = make_limiter("200/minute")
        assert sum(await hits(limiter, 201)) == 200
        await limiter.hit(key=None, client_host="192.0.2.2")
        assert len(redis.Redis.from_url(redis_url).keys(f"ratelimit:{service}:*")) == 2


class TestRedisNotAnswering:
    async def test_after_a_failed_claim_redis_is_left_alone_for_a_while(self) -> None:
        """A Redis that accepts connections and never answers: the first request waits
        for its timeout and goes through; the next ones go through without asking (no
        new connection, no wait) until the retry time, and then Redis is asked again.
        Every request let through is counted."""
        connections: list[asyncio.StreamWriter] = []

        async def accept_and_stay_silent(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            connections.append(w)

        server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = RateLimitSettings(
            anonymous="1/minute", client="1/minute", desk="1/minute", admin="1/minute"
        )
        limiter = RateLimiter(
            f"redis://127.0.0.1:{port}/0", settings, service="silent", storage_retry_s=0.5
        )
        unavailable = REGISTRY.get_sample_value("rate_limit_unavailable_total") or 0.0
        try:
            assert await hits(limiter, 1) == [True]
            asked = len(connections)
            assert asked >= 1
            assert await hits(limiter, 20) == [True] * 20
            assert len(connections) == asked
            await asyncio.sleep(0.6)
            assert await hits(limiter, 1) == [True]
            assert len(connections) > asked
        finally:
            await limiter.redis.aclose()
            server.close()
            for writer in connections:
                writer.close()
            await server.wait_closed()
        assert REGISTRY.get_sample_value("rate_limit_unavailable_total") == unavailable + 22
