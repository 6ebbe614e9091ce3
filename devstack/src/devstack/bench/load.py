"""The load generator: virtual users, time and request budgets, percentiles.

Our own asyncio client on httpx, not locust or oha. Reasons:

- The baseline must run in the same run at the same concurrency, measured the same way.
  One asyncio process drives both the API (httpx) and the raw driver (psycopg's
  AsyncConnectionPool) with the same worker loop, clock and percentile code, so the
  API/raw ratio compares like with like.
- Nothing to install: httpx and psycopg are already dependencies; oha/wrk are extra
  binaries, and they cannot vary POST bodies per request.
- The machine has 2 cores shared by the API, PostgreSQL and the load generator. Locust's
  gevent users cost more CPU per request than an asyncio loop on uvloop, so locust would
  take cores the API needs and measure itself rather than the API.
- Each virtual user has its own httpx client with one keep-alive connection: that is
  what 32 independent clients look like, and it avoids the contention of one shared httpx
  pool under many concurrent requests (encode/httpx#3215; here a shared client made
  `GET /health` 5x slower).
- httpx parses HTTP in pure Python (about 1 ms of CPU per request here), so the section
  first measures `GET /health` as the ceiling of what the client can drive; aiohttp's C
  parser would raise it, at the price of a second HTTP client in the lock file.

Every scenario is bounded (a duration, optionally a request cap, and per-request
timeouts). The load generator shares the cores with what it measures: read absolute
numbers as "on this machine", and the API/raw ratio as the useful figure.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx

from devstack.bench.cpu import CpuUse, cpu_meter

REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Load:
    """How hard and how long each scenario runs."""

    concurrency: int = 32
    duration_s: float = 10.0
    max_requests: int | None = None
    warmup_s: float = 1.0

    def describe(self) -> str:
        return (
            f"{self.concurrency} concurrent users, {self.duration_s:g} s per scenario "
            f"after {self.warmup_s:g} s warm-up"
        )


@dataclass(frozen=True)
class Summary:
    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    first_error: str | None = None
    # How the row compares with its baseline row, e.g. "0.42x RPS of raw".
    versus: str | None = None
    # CPU ms per request of every process of this machine but the load generator's
    # (`devstack.bench.cpu`): the stack's cost, steadier than its rate on a shared machine.
    cpu_ms: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def percentiles(latencies_ms: Sequence[float]) -> tuple[float, float, float] | None:
    """p50, p95 and p99 (linear interpolation between the closest ranks)."""
    if not latencies_ms:
        return None
    if len(latencies_ms) == 1:
        only = latencies_ms[0]
        return only, only, only
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def summarize(
    name: str,
    latencies_ms: Sequence[float],
    *,
    errors: int,
    seconds: float,
    first_error: str | None = None,
) -> Summary:
    """Latency percentiles cover successful requests only: a fast error is no success."""
    p50, p95, p99 = percentiles(latencies_ms) or (None, None, None)
    return Summary(
        name=name,
        requests=len(latencies_ms) + errors,
        errors=errors,
        seconds=seconds,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        first_error=first_error,
    )


class UnexpectedResponse(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code} from {response.request.url.path}")


def expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise UnexpectedResponse(response)


Call = Callable[[int], Awaitable[None]]
"""One request made by virtual user number N; raising counts as an error."""


async def measure(name: str, call: Call, load: Load) -> Summary:
    """Run `call` from `load.concurrency` users until the time or request budget is spent."""
    latencies_ms: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.perf_counter() + load.duration_s

    def budget_left() -> bool:
        if load.max_requests is not None and issued >= load.max_requests:
            return False
        return time.perf_counter() < deadline

    async def user(number: int) -> None:
        nonlocal issued
        while budget_left():
            issued += 1
            started = time.perf_counter()
            try:
                await call(number)
            except Exception as error:  # every failure is a data point, not a crash
                errors.append(str(error) or type(error).__name__)
            else:
                latencies_ms.append((time.perf_counter() - started) * 1000)

    # The meter reads every process before and after: outside the timed span.
    with cpu_meter() as cpu:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for number in range(load.concurrency):
                group.create_task(user(number))
        seconds = time.perf_counter() - started
    return summarize_run(name, latencies_ms, errors, seconds, cpu)


def summarize_run(
    name: str, latencies_ms: Sequence[float], errors: Sequence[str], seconds: float, cpu: CpuUse
) -> Summary:
    """A run's row: its successes' latencies, its failures (and the first one's message),
    and the stack's CPU per request while it ran."""
    summary = summarize(
        name,
        latencies_ms,
        errors=len(errors),
        seconds=seconds,
        first_error=errors[0] if errors else None,
    )
    return replace(summary, cpu_ms=cpu.ms_per(summary.requests))


async def scenario(name: str, call: Call, load: Load) -> Summary:
    """Warm up (connections, prepared statements, caches), then measure."""
    print(f"  {name} ...", file=sys.stderr, flush=True)
    if load.warmup_s > 0:
        await measure(name, call, Load(load.concurrency, load.warmup_s, load.max_requests, 0))
    return await measure(name, call, load)


@asynccontextmanager
async def user_clients(
    base_url: str, users: int, headers: dict[str, str] | None = None
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client of one keep-alive connection per virtual user (each sending `headers`)."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    limits=httpx.Limits(max_connections=1),
                    timeout=REQUEST_TIMEOUT_S,
                    headers=headers,
                )
            )
            for _ in range(users)
        ]


async def open_loop(
    rate: float, total: int, start: Callable[[float], Coroutine[Any, Any, None]]
) -> float:
    """Start `total` calls at `rate` per second whatever the answers' pace (an open loop),
    wait for all of them; the seconds it took. Each call gets the `perf_counter` time it
    was due: a latency counted from there includes any lag of the loop itself (no
    coordinated omission)."""
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for number in range(total):
            due = started + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(start(due))
    return time.perf_counter() - started
