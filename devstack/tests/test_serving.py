"""The APIs as their images run them (`python -m books`, `python -m orders`) with
`WEB_CONCURRENCY`: several processes on one port, and `/metrics` still the service's."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from devstack.servers import free_port
from devstack.services import ManagedProcess
from servicekit.asgi import web_concurrency

REQUESTS = 40
SCRAPES = 6


@pytest.mark.parametrize(
    ("service", "path", "series"),
    [
        ("books", "/v1/books/{}", r'^http_requests_total\{handler="/v1/books/\{book_id\}".*\} '),
        (
            "orders",
            "/v1/orders/{}",
            r'^orders_requests_total\{.*path="/v1/orders/\{order_id\}".*\} ',
        ),
    ],
)
def test_two_processes_serve_and_every_scrape_counts_both(
    service: str,
    path: str,
    series: str,
    books_database_url: str,
    orders_database_url: str,
) -> None:
    """Each request on a new connection, taken by either process; every scrape, answered by
    either process, counts all of them. With per-process metrics the count would be split
    between the processes, and differ from scrape to scrape."""
    port = free_port()
    prefix = service.upper()
    database = {"books": books_database_url, "orders": orders_database_url}[service]
    env = {
        "WEB_CONCURRENCY": "2",
        f"{prefix}_PORT": str(port),
        f"{prefix}_DATABASE_URL": database,
        f"{prefix}_RATE_LIMITS_ENABLED": "false",
    }
    url = f"http://127.0.0.1:{port}"
    with ManagedProcess([sys.executable, "-m", service], f"{url}/livez", env, own_session=True):
        for number in range(REQUESTS):
            # A fresh connection each time, so that both processes take some.
            answer = httpx.get(url + path.format(10_000_000 + number), timeout=10)
            assert answer.status_code in {401, 404}, answer.text
        counted = []
        for _ in range(SCRAPES):
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            counted.append(
                sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if re.match(series, line)
                )
            )
    assert counted == [REQUESTS] * SCRAPES


def _serving(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listed:
        return [int(child) for child in listed.read().split()]


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie is a child of ours no one has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="the processes end by prctl(PR_SET_PDEATHSIG)")
def test_the_processes_end_with_a_killed_parent(books_database_url: str) -> None:
    """uvicorn's processes outlive a SIGKILLed parent and keep its port, so a restarted
    service cannot bind; ours get SIGTERM from the kernel and stop."""
    port = free_port()
    env = {
        "WEB_CONCURRENCY": "2",
        "BOOKS_PORT": str(port),
        "BOOKS_DATABASE_URL": books_database_url,
    }
    url = f"http://127.0.0.1:{port}"
    with ManagedProcess(
        [sys.executable, "-m", "books"], f"{url}/livez", env, own_session=True
    ) as parent:
        assert parent.pid is not None
        servers = [pid for pid in _children(parent.pid) if "spawn_main" in _command(pid)]
        assert len(servers) == 2
        os.kill(parent.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (any(map(_running, servers)) or _serving(port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in servers if _running(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert left == []
    assert not _serving(port)


def _command(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().replace(b"\0", b" ").decode()


def test_one_process_per_core_unless_asked() -> None:
    assert web_concurrency({}) == len(os.sched_getaffinity(0))
    one_core = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from servicekit.asgi import web_concurrency; print(web_concurrency({}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert one_core.stdout.strip() == "1"
    assert web_concurrency({"WEB_CONCURRENCY": " 3 "}) == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit, match="WEB_CONCURRENCY must be a whole number"):
            web_concurrency({"WEB_CONCURRENCY": bad})
