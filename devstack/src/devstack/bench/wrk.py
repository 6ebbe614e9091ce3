"""HTTP load from wrk: a C load generator whose own ceiling is far above what the APIs
serve on this machine (the asyncio client of `load.py` topped out near 2,200 rps, below
the targets it was measuring against).

Each scenario writes a small Lua script: requests pick a path at random from the ones
given (random book ids, say), every response that is not the expected status counts as
an error, and wrk's `done` hook prints the count and the p50/p95/p99 of its latency
histogram on one line that this module parses. wrk is a closed loop (each connection
sends its next request when the answer came), like the asyncio users: figures are
throughput at a fixed concurrency, the raw-driver baselines run the same way. A request
cap (`--requests`) is approximate here: each thread stops at its share, and the requests
already on their way still count.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from devstack.bench.cpu import cpu_meter
from devstack.bench.load import REQUEST_TIMEOUT_S, Load, Summary

RESULT_PREFIX = "WRK_RESULT "
CAPPED = "WRK_CAPPED"
THREADS = 2

SCRIPT = """
local paths = {paths}
local method = {method}
local body = {body}
local headers = {headers}
local expected = {expected}
local cap = {cap}
local threads = {{}}

function setup(thread)
  local number = #threads
  thread:set("seed", number + 1)
  -- The request cap, shared out between the threads.
  thread:set("cap", math.floor(cap / {threads}) + (number < cap % {threads} and 1 or 0))
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 100 + seed)
  sent = 0
  unexpected = 0
end

function request()
  sent = sent + 1
  local path = paths[math.random(#paths)]
  return wrk.format(method, path, headers, body and (body:gsub("{{n}}", seed .. "-" .. sent)))
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
    first_status = first_status or status
  end
  if cap > 0 and sent >= cap then
    io.write("{capped}\\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local unexpected_total = 0
  local first = nil
  for _, thread in ipairs(threads) do
    unexpected_total = unexpected_total + thread:get("unexpected")
    first = first or thread:get("first_status")
  end
  local errors = summary.errors
  io.write(string.format(
    "{prefix}%d %d %d %d %.3f %.3f %.3f %s\\n",
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout,
    unexpected_total,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, tostring(first)))
end
"""


class WrkMissing(Exception):
    """wrk is not installed."""


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkMissing("wrk is not installed (Debian/Ubuntu: `apt-get install wrk`)")
    return binary


def _lua(value: object) -> str:
    """A Lua literal for a string, a list of strings, a dict of strings, an int or None."""
    if value is None:
        return "nil"
    if isinstance(value, bool | int):
        return str(int(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "{" + ", ".join(json.dumps(item) for item in value) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def script(
    paths: Sequence[str],
    *,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
    expected: int = 200,
    max_requests: int = 0,
    threads: int = THREADS,
) -> str:
    """The Lua of one scenario; `{n}` in `body` becomes a text unique in the run."""
    return SCRIPT.format(
        paths=_lua(list(paths)),
        method=_lua(method),
        body=_lua(body),
        headers=_lua(headers or {}),
        expected=expected,
        cap=max_requests,
        threads=threads,
        capped=CAPPED,
        prefix=RESULT_PREFIX,
    )


def parse(name: str, output: str) -> Summary:
    line = next((x for x in output.splitlines() if x.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {output.strip()[-300:]}")
    fields = line.removeprefix(RESULT_PREFIX).split()
    requests, duration_us, socket_errors, unexpected = (int(value) for value in fields[:4])
    p50, p95, p99 = (float(value) for value in fields[4:7])
    errors = socket_errors + unexpected
    first = None if fields[7] == "nil" else f"HTTP {fields[7]}"
    if socket_errors and first is None:
        first = f"{socket_errors} socket errors (connect, read, write or timeout)"
    return Summary(
        name=name,
        requests=requests,
        errors=errors,
        seconds=duration_us / 1_000_000,
        p50_ms=p50 if requests > errors else None,
        p95_ms=p95 if requests > errors else None,
        p99_ms=p99 if requests > errors else None,
        first_error=first,
    )


async def _run(base_url: str, lua: str, *, connections: int, threads: int, seconds: float) -> str:
    """wrk's output. wrk runs for its whole duration even when every thread has stopped
    at the request cap; it prints its result at once on SIGINT, so it gets one then."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        path = Path(folder) / "scenario.lua"
        path.write_text(lua)
        process = await asyncio.create_subprocess_exec(
            wrk_binary(),
            f"--threads={threads}",
            f"--connections={connections}",
            f"--duration={max(1, round(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S:g}s",
            f"--script={path}",
            base_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        lines: list[str] = []
        capped = 0
        while line := (await process.stdout.readline()).decode(errors="replace"):
            lines.append(line)
            if line.startswith(CAPPED):
                capped += 1
                if capped == threads:
                    process.send_signal(signal.SIGINT)
        await process.wait()
    return "".join(lines)


async def wrk_scenario(
    name: str,
    base_url: str,
    paths: Sequence[str],
    load: Load,
    *,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
    expected: int = 200,
) -> Summary:
    """`paths` (one chosen at random per request) loaded by wrk at `load.concurrency`
    connections: a warm-up, then the measured run."""
    threads = min(THREADS, load.concurrency, load.max_requests or THREADS)
    lua = script(
        paths,
        method=method,
        body=body,
        headers=headers,
        expected=expected,
        max_requests=load.max_requests or 0,
        threads=threads,
    )
    run = {"connections": load.concurrency, "threads": threads}
    if load.warmup_s > 0:
        await _run(base_url, lua, **run, seconds=load.warmup_s)
    with cpu_meter() as cpu:
        output = await _run(base_url, lua, **run, seconds=load.duration_s)
    summary = parse(name, output)
    return replace(summary, cpu_ms=cpu.ms_per(summary.requests))
