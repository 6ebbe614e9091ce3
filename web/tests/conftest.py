"""The site under test is the whole stack as `make run` starts it (books, orders, relays,
workers and web, on real PostgreSQL and Redis), with one staff account."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from devstack import integrity
from devstack.pytest_plugin import create_database, drop_database
from devstack.run import dev_key_file
from devstack.servers import free_port
from servicekit.api_keys import Role, bearer

STAFF_NAME = "librarian"
STAFF_PASSWORD = "correct horse battery"
_CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')


class Site:
    """The running stack: its URLs, and the APIs to arrange what a test needs."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.url = f"http://127.0.0.1:{env['WEB_PORT']}"
        self.books_url = f"http://127.0.0.1:{env['BOOKS_PORT']}"
        self.orders_url = f"http://127.0.0.1:{env['ORDERS_PORT']}"
        self.books = httpx.Client(base_url=self.books_url, timeout=10)
        self.orders = httpx.Client(base_url=self.orders_url, timeout=10)

    def book(self, **fields: Any) -> dict[str, Any]:
        body = {
            "title": "A Book",
            "author": "An Author",
            "description": "About it.",
            "price": "10.00",
        }
        response = self.books.post("/v1/books", json=body | fields)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def member(self, **fields: Any) -> dict[str, Any]:
        body = {"name": "A Member", "email": f"m{time.monotonic_ns()}@example.org"}
        response = self.orders.post("/v1/members", json=body | fields)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def stock(self, book_id: int) -> int | None:
        stock = self.books.get(f"/v1/books/{book_id}").json()["stock"]
        return None if stock is None else int(stock)

    @contextmanager
    def reservations_held(self, book_id: int) -> Iterator[None]:
        """While inside, the saga cannot reserve the book (its row is locked), but orders
        still pass the stock check: both shoppers of a race get that far, every time."""
        with psycopg.connect(self.env["BOOKS_DATABASE_URL"]) as conn:
            conn.execute("SELECT 1 FROM books WHERE id = %s FOR UPDATE", [book_id])
            yield
            conn.rollback()

    def wait(
        self, path: str, until: Any, client: httpx.Client | None = None, timeout_s: float = 30
    ) -> Any:
        """GET `path` (an orders path by default) until `until(body)` holds."""
        client = client or self.orders
        deadline = time.monotonic() + timeout_s
        while not until(body := client.get(path).json()):
            assert time.monotonic() < deadline, f"{path} stayed {body}"
            time.sleep(0.1)
        return body


class Visitor:
    """A browser without JavaScript: cookies kept, forms posted with their CSRF field."""

    def __init__(self, site: Site) -> None:
        self.client = httpx.Client(base_url=site.url, timeout=10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def submit(self, page: str, action: str, data: dict[str, Any]) -> httpx.Response:
        """Open `page`, then post `data` to `action` as its form would (not following the
        redirect, so tests see where it goes)."""
        opened = self.client.get(page)
        token = _CSRF_FIELD.search(opened.text)
        assert token is not None, f"no form with a CSRF field on {page}: {opened.text[:500]}"
        return self.client.post(action, data={"csrftoken": token[1], **data})

    def sign_in(self) -> None:
        response = self.submit(
            "/desk/sign-in", "/desk/sign-in", {"name": STAFF_NAME, "password": STAFF_PASSWORD}
        )
        assert response.status_code == 303, response.text


@pytest.fixture(autouse=True)
def _no_orphans(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that used the stack, books and orders come to agree on every
    settled order and loan (`make check-integrity`) once the jobs it started have run."""
    yield
    if "site" not in request.fixturenames:
        return
    env = request.getfixturevalue("site").env
    deadline = time.monotonic() + 30
    while not (
        report := integrity.check(env["BOOKS_DATABASE_URL"], env["ORDERS_DATABASE_URL"])
    ).clean:
        assert time.monotonic() < deadline, "\n".join(report.lines())
        time.sleep(0.5)


@pytest.fixture(scope="session")
def site(postgres_server_url: str, redis_url: str) -> Iterator[Site]:
    redis.Redis.from_url(redis_url).flushdb()
    books_db = create_database(postgres_server_url, "web_books")
    orders_db = create_database(postgres_server_url, "web_orders")
    data_dir = Path(tempfile.mkdtemp(prefix="bookstore-web-test-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BOOKS_", "ORDERS_", "WEB_"))},
        "BOOKS_DATABASE_URL": books_db,
        "ORDERS_DATABASE_URL": orders_db,
        "REDIS_URL": redis_url,
        "STACK_DATA_DIR": str(data_dir),
        "STACK_SMTP_PORT": str(free_port()),
        "BOOKS_PORT": str(free_port()),
        "ORDERS_PORT": str(free_port()),
        "WEB_PORT": str(free_port()),
        "BOOKS_RELAY_METRICS_PORT": str(free_port()),
        "ORDERS_RELAY_METRICS_PORT": str(free_port()),
        "WORKERS_METRICS_PORT": str(free_port()),
        "WEB_STAFF_FILE": str(data_dir / "staff.json"),
        "WEB_SECRET_KEY": "test-secret-key-of-the-web-tests-0123456789",
    }
    subprocess.run(
        [sys.executable, "-m", "web", "staff", "add", STAFF_NAME],
        input=STAFF_PASSWORD + "\n",
        env=env,
        text=True,
        check=True,
        capture_output=True,
    )
    log = data_dir / "make-run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.run"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    site = Site(data_dir, env)
    try:
        deadline = time.monotonic() + 90
        urls = (f"{site.books_url}/ready", f"{site.orders_url}/ready", f"{site.url}/livez")
        while not _all_up(urls):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the stack did not start: {log.read_text()}"
            time.sleep(0.3)
        # The tests arrange their data as the admin, with the key make run made.
        admin_key = (data_dir / dev_key_file(Role.ADMIN)).read_text().strip()
        for api in (site.books, site.orders):
            api.headers.update(bearer(admin_key))
        yield site
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        drop_database(postgres_server_url, books_db)
        drop_database(postgres_server_url, orders_db)
        shutil.rmtree(data_dir, ignore_errors=True)


def _all_up(urls: tuple[str, ...]) -> bool:
    try:
        return all(httpx.get(url, timeout=1).status_code == 200 for url in urls)
    except httpx.TransportError:
        return False


@pytest.fixture
def visitor(site: Site) -> Iterator[Visitor]:
    visitor = Visitor(site)
    yield visitor
    visitor.client.close()


@pytest.fixture
def librarian(site: Site) -> Iterator[Visitor]:
    visitor = Visitor(site)
    visitor.sign_in()
    yield visitor
    visitor.client.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each test's outcome on it, for fixtures that act on failure (screenshots)."""
    report = yield
    if report.when == "call":
        item.report_call = report  # type: ignore[attr-defined]
    return report
