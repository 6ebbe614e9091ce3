"""`make run` end to end: real processes, real ports, data kept across restarts."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devstack.run import dev_key_file, without_password
from devstack.servers import free_port
from servicekit.api_keys import Role, bearer


class Stack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "make-run.log"
        self.books_port = free_port()
        self.orders_port = free_port()
        self.web_port = free_port()
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.endswith(("DATABASE_URL", "REDIS_URL", "SMTP_URL"))
            },
            "STACK_DATA_DIR": str(data_dir),
            "STACK_POSTGRES_PORT": str(free_port()),
            "STACK_REDIS_PORT": str(free_port()),
            "STACK_SMTP_PORT": str(free_port()),
            "BOOKS_PORT": str(self.books_port),
            "ORDERS_PORT": str(self.orders_port),
            "BOOKS_RELAY_METRICS_PORT": str(free_port()),
            "ORDERS_RELAY_METRICS_PORT": str(free_port()),
            "WORKERS_METRICS_PORT": str(free_port()),
            "WEB_PORT": str(self.web_port),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def books_url(self) -> str:
        return f"http://127.0.0.1:{self.books_port}"

    @property
    def orders_url(self) -> str:
        return f"http://127.0.0.1:{self.orders_port}"

    def start(self) -> None:
        # A file, not a pipe: nobody reads while the stack runs, and a full pipe blocks it.
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack.run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until_ready()

    def wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                urls = (
                    f"{self.books_url}/ready",
                    f"{self.orders_url}/health",
                    f"http://127.0.0.1:{self.web_port}/livez",
                )
                if all(httpx.get(url, timeout=1).status_code == 200 for url in urls):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        pytest.fail("the stack did not become ready within 90 s")

    def admin_headers(self) -> dict[str, str]:
        """The `Authorization` of the development admin key make run made."""
        return bearer((self.data_dir / dev_key_file(Role.ADMIN)).read_text().strip())

    def stop(self, signum: int = signal.SIGINT) -> str:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait(timeout=60)
        output = self.log_path.read_text()
        assert self.process.returncode == 0, output
        return output


def migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`make migrate` with `env`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "devstack.run", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_for_status(order_url: str, headers: dict[str, str], timeout_s: float = 30) -> str:
    """The order's status once the workers have moved it on from pending."""
    deadline = time.monotonic() + timeout_s
    while (status := httpx.get(order_url, headers=headers).json()["status"]) == "pending":
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return str(status)


@pytest.fixture
def stack() -> Iterator[Stack]:
    # Outside pytest's temp tree: the embedded server's own user must reach the data.
    data_dir = Path(tempfile.mkdtemp(prefix="bookstore-test-stack-"))
    stack = Stack(data_dir)
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        # A failed test: stop it the way Ctrl-C does, so no server or service outlives it.
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
    shutil.rmtree(data_dir, ignore_errors=True)


class TestMakeRun:
    def test_book_and_order_survive_a_restart(self, stack: Stack) -> None:
        stack.start()
        admin = stack.admin_headers()
        created = httpx.post(
            f"{stack.books_url}/v1/books",
            json={"title": "Kept", "author": "A", "description": "D", "price": "1.00"},
            headers=admin,
        )
        assert created.status_code == 201
        order = httpx.post(
            f"{stack.orders_url}/v1/orders",
            json={"items": [{"book_id": created.json()["id"], "quantity": 2}]},
            headers=admin,
        )
        assert order.status_code == 201
        order_url = f"{stack.orders_url}{order.headers['location']}"
        assert wait_for_status(order_url, admin) == "confirmed"
        storefront = httpx.get(f"http://127.0.0.1:{stack.web_port}/")
        assert storefront.status_code == 200
        assert "Kept" in storefront.text
        # Redis wants the password make run keeps; the banner never prints it.
        password = (stack.data_dir / "redis_password").read_text().strip()
        assert (stack.data_dir / "redis_password").stat().st_mode & 0o777 == 0o600
        redis_port = stack.env["STACK_REDIS_PORT"]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=int(redis_port)).ping()
        assert redis.Redis(port=int(redis_port), password=password).ping()
        output = stack.stop(signal.SIGTERM)
        assert f"redis://:***@127.0.0.1:{redis_port}/0" in output
        assert password not in output
        assert f"web          http://127.0.0.1:{stack.web_port}" in output
        assert "Bookstore is starting" in output
        assert f"docs {stack.books_url}/docs" in output
        assert f"docs {stack.orders_url}/docs" in output
        # The development keys, for curl; kept owner-only, the same on every run.
        assert f"BOOKSTORE_ADMIN_KEY={admin['Authorization'].removeprefix('Bearer ')}" in output
        assert (stack.data_dir / dev_key_file(Role.ADMIN)).stat().st_mode & 0o777 == 0o600
        smtp_url = f"smtp://127.0.0.1:{stack.env['STACK_SMTP_PORT']}"
        assert f"mail         {stack.data_dir / 'mail'}   smtp {smtp_url}" in output

        stack.start()
        fetched = httpx.get(f"{stack.books_url}{created.headers['location']}")
        assert fetched.json() == created.json()
        assert httpx.get(order_url, headers=admin).json()["items"] == (order.json()["items"])
        stack.stop(signal.SIGINT)

    def test_stop_leaves_no_server_running(self, stack: Stack) -> None:
        stack.start()
        stack.stop()
        assert not (stack.data_dir / "postgres" / "postmaster.pid").exists()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{stack.books_url}/health", timeout=1)

    def test_a_second_run_on_the_same_folder_refuses_and_touches_nothing(
        self, stack: Stack
    ) -> None:
        stack.start()
        assert stack.process is not None
        for command in ("run", "migrate"):
            second = subprocess.run(
                [sys.executable, "-m", "devstack.run", command],
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert second.returncode == 1
            assert f"is in use by make run (pid {stack.process.pid})" in second.stderr
            assert "Traceback" not in second.stderr + second.stdout
        # The first one's servers and services are untouched.
        assert httpx.get(f"{stack.books_url}/ready").status_code == 200
        assert httpx.get(f"{stack.orders_url}/health").status_code == 200
        stack.stop()

    def test_taken_port_is_a_clear_error(self, stack: Stack) -> None:
        import socket

        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", stack.books_port))
            blocker.listen()
            result = subprocess.run(
                [sys.executable, "-m", "devstack.run"],
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
        assert result.returncode == 1
        assert f"error: port {stack.books_port} for books is taken" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout

    def test_taken_smtp_port_is_a_clear_error(self, stack: Stack) -> None:
        import socket

        port = int(stack.env["STACK_SMTP_PORT"])
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", port))
            blocker.listen()
            result = subprocess.run(
                [sys.executable, "-m", "devstack.run"],
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
        assert result.returncode == 1
        assert (
            f"error: port {port} for smtp is taken: stop what listens there or set STACK_SMTP_PORT"
            in result.stderr
        )
        assert "Traceback" not in result.stderr + result.stdout

    def test_a_predecessors_port_leaves_each_api_on_its_own(self, stack: Stack) -> None:
        """`PORT` (one service's port, in the predecessor's `.env`) exported for `make run`
        does not send both APIs to it: each gets its own, and says why PORT is ignored."""
        stack.env["PORT"] = str(free_port())
        stack.start()
        assert httpx.get(f"{stack.books_url}/livez").status_code == 200
        assert httpx.get(f"{stack.orders_url}/livez").status_code == 200
        output = stack.stop()
        for ours in ("BOOKS_PORT", "ORDERS_PORT"):
            assert f"PORT (the predecessor's name) is ignored: {ours} is set and wins" in output

    @pytest.mark.parametrize("variable", ["BOOKS_DB_DSN", "DATABASE_URL"])
    def test_the_predecessors_database_variables_are_used(
        self, stack: Stack, variable: str
    ) -> None:
        """Set alone, the predecessor's name is the database `make run` uses (here one
        nobody listens on, so the error names it)."""
        result = migrate(
            {**stack.env, variable: f"postgresql://postgres@127.0.0.1:{free_port()}/x"}
        )
        assert result.returncode == 1
        assert f"error: cannot reach {variable}" in result.stderr

    def test_unreachable_database_url_is_a_clear_error(self, stack: Stack) -> None:
        unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
        result = migrate({**stack.env, "BOOKS_DATABASE_URL": unreachable})
        assert result.returncode == 1
        assert "error: cannot reach BOOKS_DATABASE_URL" in result.stderr
        assert "Traceback" not in result.stderr


class TestCrashes:
    LONG_RUNNING = ("books", "orders", "books-relay", "orders-relay", "workers", "web")

    @pytest.mark.timeout(180)
    def test_each_process_killed_is_started_again_and_every_order_settles(
        self, stack: Stack
    ) -> None:
        """SIGKILL each long-running process once while orders are placed: the stack keeps
        running, each process comes back, and every order the API took ends up settled."""
        stack.start()
        admin = stack.admin_headers()
        book = httpx.post(
            f"{stack.books_url}/v1/books",
            json={"title": "Sturdy", "author": "A", "description": "D", "price": "1.00"},
            headers=admin,
        ).json()
        placed: list[str] = []
        placing = threading.Event()
        placing.set()

        def place_orders() -> None:
            while placing.is_set():
                with contextlib.suppress(httpx.TransportError):
                    response = httpx.post(
                        f"{stack.orders_url}/v1/orders",
                        json={"items": [{"book_id": book["id"], "quantity": 1}]},
                        headers=admin,
                        timeout=5,
                    )
                    if response.status_code == 201:
                        placed.append(response.headers["location"])
                time.sleep(0.05)

        placer = threading.Thread(target=place_orders)
        placer.start()
        try:
            for name in self.LONG_RUNNING:
                kill_and_see_it_restarted(started_pid(stack.log_path.read_text(), name))
                stack.wait_until_ready()
        finally:
            placing.clear()
            placer.join()

        assert stack.process is not None
        assert stack.process.poll() is None
        assert len(placed) > 10
        statuses = {
            wait_for_status(f"{stack.orders_url}{location}", admin, 60) for location in placed
        }
        assert statuses <= {"confirmed", "rejected"}
        output = stack.stop(signal.SIGTERM)
        for name in self.LONG_RUNNING:
            assert f"{name} killed by SIGKILL; restarting in 1 s" in output


def started_pid(output: str, name: str) -> int:
    """The pid honcho printed for `name` (the process that restarts it)."""
    (pid,) = re.findall(rf"\| {re.escape(name)} started \(pid=(\d+)\)", output)
    return int(pid)


def child_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children]


def kill_and_see_it_restarted(supervisor: int) -> None:
    """SIGKILL the process `supervisor` runs; return once it runs another."""
    (first,) = child_pids(supervisor)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60  # a generous bound only to never hang
    while child_pids(supervisor) in ([], [first]):
        assert time.monotonic() < deadline, f"pid {supervisor} did not start its process again"
        time.sleep(0.1)


class TestBanner:
    @pytest.mark.parametrize(
        ("url", "printed"),
        [
            ("redis://:s3cret@127.0.0.1:6380/0", "redis://:***@127.0.0.1:6380/0"),
            ("redis://user:s3cret@h:1/2", "redis://user:***@h:1/2"),
            ("redis://127.0.0.1:6380/0", "redis://127.0.0.1:6380/0"),
        ],
    )
    def test_urls_are_printed_without_their_password(self, url: str, printed: str) -> None:
        assert without_password(url) == printed
