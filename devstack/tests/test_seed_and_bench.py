"""`make seed` (books.seed) and `make bench` (devstack.bench) against real servers."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from alembic import command
from alembic.config import Config

import workers.bench as worker_bench
from books.config import get_settings
from books.seed import DemoBooks, SeedError, demo_rows, seed_books
from books.seed import main as seed_main
from devstack.bench import cli, jobs, load, report, seeding, stack
from devstack.bench.lending_data import LoanSlots
from devstack.pytest_plugin import create_database, drop_database
from devstack.seed import SCENARIOS, seed_lending
from devstack.servers import EmbeddedValkey, free_port
from devstack.services import ServiceProcess
from servicekit.api_keys import Role, new_token, register_key

ROOT = Path(__file__).resolve().parents[2]
BOOKS_DIR = ROOT / "books"
SERVICE_KEY = "bench-test-service-key-41c7"


@pytest.fixture(scope="module")
def books_url(postgres_server_url: str) -> Iterator[str]:
    """A books database migrated with the production migrations."""
    url = create_database(postgres_server_url, "seed_bench")
    config = Config(str(BOOKS_DIR / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture(scope="module")
def admin_key(books_url: str, orders_database: str) -> str:
    """An admin key in both databases, as `make run` registers its development key."""
    token = new_token()
    register_key([books_url, orders_database], token=token, role=Role.ADMIN, name="bench")
    return token


@pytest.fixture(autouse=True)
def _bench_has_the_key(monkeypatch: pytest.MonkeyPatch, admin_key: str) -> None:
    """The bench finds the admin key where a user's shell has it."""
    monkeypatch.setenv("BOOKSTORE_ADMIN_KEY", admin_key)


@pytest.fixture
def db(books_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection to an empty catalog (CASCADE: tables that reference books)."""
    with psycopg.connect(books_url, autocommit=True) as conn:
        conn.execute("TRUNCATE books, catalog_days RESTART IDENTITY CASCADE")
        conn.execute("UPDATE catalog_counters SET active_books = 0")
        yield conn


def scalar(db: psycopg.Connection[Any], query: str) -> Any:
    row = db.execute(query).fetchone()
    assert row is not None
    return row[0]


def unused_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/books_db"


class TestDemoRows:
    def test_prices_are_shop_prices_with_two_decimals(self) -> None:
        rows = demo_rows(random.Random(1), 500, now=datetime.now(UTC))
        prices = [row[3] for row in rows]
        assert all(isinstance(price, Decimal) for price in prices)
        assert all(price.as_tuple().exponent == -2 for price in prices)
        assert all(Decimal("0") <= price < Decimal("100") for price in prices)

    def test_books_are_spread_over_past_years(self) -> None:
        now = datetime.now(UTC)
        rows = demo_rows(random.Random(2), 500, now=now)
        created = [row[4] for row in rows]
        assert len(set(created)) == len(created)
        assert (max(created) - min(created)).days > 365
        assert all(row[4] <= row[5] <= now for row in rows)

    def test_texts_are_not_blank(self) -> None:
        for title, author, description, *_ in demo_rows(
            random.Random(3), 200, now=datetime.now(UTC)
        ):
            assert title.strip()
            assert author.strip()
            assert description.strip()

    def test_same_random_seed_gives_same_books(self) -> None:
        now = datetime.now(UTC)
        assert demo_rows(random.Random(4), 20, now=now) == demo_rows(random.Random(4), 20, now=now)


class TestSeedBooks:
    def test_loads_the_requested_number_of_books_in_chunks(
        self, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        result = seed_books(books_url, count=2_500, chunk_size=1_000)
        assert result.rows == 2_500
        assert scalar(db, "SELECT count(*) FROM books WHERE active") == 2_500

    def test_counter_equals_count_after_several_copies(
        self, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        """The total and the day counts are exact after a bulk load (into the empty table,
        which pauses the insert trigger) and after a load that keeps the triggers."""
        seed_books(books_url, count=1_234, chunk_size=500)
        seed_books(books_url, count=766, chunk_size=1_000)
        counter = scalar(db, "SELECT active_books FROM catalog_counters WHERE id = 1")
        assert counter == scalar(db, "SELECT count(*) FROM books WHERE active") == 2_000
        days = "SELECT day, active_books FROM catalog_days WHERE active_books > 0 ORDER BY 1"
        counted = (
            "SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM books WHERE active"
            " GROUP BY 1 ORDER BY 1"
        )
        assert db.execute(days).fetchall() == db.execute(counted).fetchall()

    def test_prices_and_timestamps_are_valid(
        self, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        seed_books(books_url, count=1_000)
        low, high, scales = db.execute(
            "SELECT min(price), max(price), array_agg(DISTINCT scale(price)) FROM books"
        ).fetchone() or (None, None, None)
        assert low is not None
        assert high is not None
        assert Decimal("0") <= low <= high <= Decimal("99999999.99")
        assert scales == [2]
        assert scalar(db, "SELECT count(*) FROM books WHERE updated_at < created_at") == 0
        assert scalar(db, "SELECT count(*) FROM books WHERE created_at > now()") == 0

    def test_reports_progress_after_each_chunk(self, books_url: str) -> None:
        reports: list[tuple[int, int]] = []
        seed_books(
            books_url,
            count=250,
            chunk_size=100,
            progress=lambda done, total, _elapsed: reports.append((done, total)),
        )
        assert reports == [(100, 250), (200, 250), (250, 250)]

    def test_unmigrated_database_is_a_clear_error(self, postgres_server_url: str) -> None:
        url = create_database(postgres_server_url, "seed_unmigrated")
        try:
            with pytest.raises(SeedError, match="not migrated: run `make migrate`"):
                seed_books(url, count=10)
        finally:
            drop_database(postgres_server_url, url)

    def test_unreachable_database_is_a_clear_error(self, books_url: str) -> None:
        with pytest.raises(SeedError, match="cannot reach the books database"):
            seed_books(unused_url(), count=10)


class TestBulkLoad:
    """A load at least as big as the catalog strips `books` for the COPY and restores it."""

    def test_empty_catalog_ends_with_every_index_foreign_key_and_trigger(
        self, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        before = table_shape(db)
        old_indexes = index_oids(db)
        phases: list[str] = []
        result = seed_books(books_url, count=3_000, chunk_size=1_000, phase=phases.append)
        assert result.rows == 3_000
        assert table_shape(db) == before
        # The secondary indexes were rebuilt (new oids), the primary key kept.
        new_indexes = index_oids(db)
        assert new_indexes.pop("books_pkey") == old_indexes.pop("books_pkey")
        assert set(new_indexes.values()).isdisjoint(old_indexes.values())
        assert [phase.split(":")[0].split(" ")[0] for phase in phases] == [
            "bulk", "loaded", "vacuumed", "rebuilt", "analyzed"
        ]  # fmt: skip
        counter = scalar(db, "SELECT active_books FROM catalog_counters WHERE id = 1")
        assert counter == scalar(db, "SELECT count(*) FROM books WHERE active") == 3_000
        # Vacuumed (visibility map set) and analyzed (row estimate) before returning.
        pages, visible, tuples = db.execute(
            "SELECT relpages, relallvisible, reltuples FROM pg_class WHERE oid = 'books'::regclass"
        ).fetchone() or (0, 0, 0)
        assert pages > 0
        assert visible == pages
        assert tuples == 3_000

    def test_small_load_into_bigger_catalog_keeps_rows_and_indexes(
        self, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        seed_books(books_url, count=1_000)
        before = table_shape(db)
        indexes = index_oids(db)
        first_titles = db.execute("SELECT id, title FROM books ORDER BY id").fetchall()
        phases: list[str] = []
        seed_books(books_url, count=400, chunk_size=100, phase=phases.append)
        assert index_oids(db) == indexes
        assert table_shape(db) == before
        assert phases == [phases[0]]
        assert phases[0].startswith("vacuumed and analyzed")
        assert db.execute("SELECT id, title FROM books ORDER BY id LIMIT 1000").fetchall() == (
            first_titles
        )
        counter = scalar(db, "SELECT active_books FROM catalog_counters WHERE id = 1")
        assert counter == scalar(db, "SELECT count(*) FROM books") == 1_400

    def test_interrupted_bulk_load_rolls_back_whole(
        self, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        seed_books(books_url, count=300)
        before = table_shape(db)
        indexes = index_oids(db)

        def interrupt(done: int, _total: int, _elapsed: float) -> None:
            if done >= 400:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            seed_books(books_url, count=1_000, chunk_size=200, progress=interrupt)
        assert index_oids(db) == indexes
        assert table_shape(db) == before
        counter = scalar(db, "SELECT active_books FROM catalog_counters WHERE id = 1")
        assert counter == scalar(db, "SELECT count(*) FROM books") == 300

    def test_copied_books_are_the_drawn_books(
        self, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        """The binary COPY encoder writes exactly the values `DemoBooks.rows` renders."""
        now = datetime.now(UTC)
        seed_books(books_url, count=500, chunk_size=150, random_seed=11)
        rng = np.random.default_rng(11)
        expected = [
            row for size in (150, 150, 150, 50) for row in DemoBooks.draw(rng, size, now=now).rows()
        ]
        copied = db.execute(
            "SELECT title, author, description, price, created_at, updated_at"
            " FROM books ORDER BY id"
        ).fetchall()
        assert [row[:4] for row in copied] == [row[:4] for row in expected]
        for (*_, created, updated), (*_, drawn_created, drawn_updated) in zip(
            copied, expected, strict=True
        ):
            assert abs(created - drawn_created) < timedelta(minutes=1)
            assert abs(updated - drawn_updated) < timedelta(minutes=1)
            assert created <= updated


class TestSeedSection:
    def test_measures_the_seed_and_its_floor_in_a_scratch_catalog(
        self, postgres_server_url: str, books_url: str, db: psycopg.Connection[Any]
    ) -> None:
        def scratch_databases() -> list[str]:
            rows = db.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench_seed_%'"
            ).fetchall()
            return [name for (name,) in rows]

        before = scratch_databases()
        report = seeding.measure(books_url, 2_000, random_seed=5)
        floor, seed = report.summaries
        assert (floor.requests, seed.requests) == (2_000, 2_000)
        assert seed.versus is not None
        assert "x RPS of the floor" in seed.versus
        assert [note.split()[0] for note in report.notes] == [
            "bulk", "loaded", "vacuumed", "rebuilt", "analyzed"
        ]  # fmt: skip
        # The stack's catalog is not touched and the scratch catalog is gone.
        assert scalar(db, "SELECT count(*) FROM books") == 0
        assert scratch_databases() == before


def table_shape(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """What a load must leave as it found it: indexes, constraints and triggers."""
    return {
        "indexes": db.execute(
            "SELECT pg_get_indexdef(indexrelid), indisvalid, indisready FROM pg_index"
            " WHERE indrelid = 'books'::regclass ORDER BY 1"
        ).fetchall(),
        "constraints": db.execute(
            "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
            " WHERE conrelid = 'books'::regclass ORDER BY 1"
        ).fetchall(),
        "triggers": db.execute(
            "SELECT tgname, tgenabled FROM pg_trigger"
            " WHERE tgrelid = 'books'::regclass AND NOT tgisinternal ORDER BY 1"
        ).fetchall(),
    }


def index_oids(db: psycopg.Connection[Any]) -> dict[str, int]:
    rows = db.execute(
        "SELECT indexrelid::regclass::text, indexrelid::bigint FROM pg_index"
        " WHERE indrelid = 'books'::regclass"
    ).fetchall()
    return dict(rows)


class TestSeedCommand:
    @pytest.fixture(autouse=True)
    def _fresh_settings(self) -> Iterator[None]:
        get_settings.cache_clear()
        yield
        get_settings.cache_clear()

    def test_prints_rows_per_second(
        self,
        books_url: str,
        db: psycopg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("BOOKS_DATABASE_URL", books_url)
        assert seed_main(["--count", "30"]) == 0
        output = capsys.readouterr().out
        assert "seeded 30/30 books" in output
        assert "rows/s" in output
        assert scalar(db, "SELECT count(*) FROM books") == 30

    def test_unreachable_database_exits_without_traceback(
        self,
        books_url: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("BOOKS_DATABASE_URL", unused_url())
        assert seed_main(["--count", "30"]) == 1
        error = capsys.readouterr().err
        assert error.startswith("error: cannot reach the books database")
        assert "Traceback" not in error


class TestPercentiles:
    def test_interpolates_between_ranks(self) -> None:
        p50, p95, p99 = load.percentiles([float(value) for value in range(100, 0, -1)]) or ()
        assert p50 == pytest.approx(50.5)
        assert p95 == pytest.approx(95.05)
        assert p99 == pytest.approx(99.01)

    def test_single_sample_is_every_percentile(self) -> None:
        assert load.percentiles([7.0]) == (7.0, 7.0, 7.0)

    def test_no_samples_have_no_percentiles(self) -> None:
        assert load.percentiles([]) is None


class TestSummarize:
    def test_counts_errors_as_requests_but_not_in_latencies(self) -> None:
        summary = load.summarize("x", [1.0, 2.0, 3.0], errors=1, seconds=2.0)
        assert summary.requests == 4
        assert summary.errors == 1
        assert summary.rps == pytest.approx(2.0)
        assert summary.p50_ms == pytest.approx(2.0)

    def test_all_errors_leave_latencies_empty(self) -> None:
        summary = load.summarize("x", [], errors=3, seconds=1.0, first_error="HTTP 500")
        assert (summary.p50_ms, summary.p95_ms, summary.p99_ms) == (None, None, None)
        assert "HTTP 500" in report.render([report.Report("s", summaries=[summary])])

    def test_ratio_compares_rps_and_p50(self) -> None:
        api = load.summarize("api", [4.0], errors=0, seconds=1.0)
        raw = load.summarize("raw", [1.0, 1.0, 1.0, 1.0], errors=0, seconds=1.0)
        assert report.ratio_note(api, raw) == "API/raw for GET by id: RPS 0.25x, p50 4.00x"


class TestMeasure:
    async def test_stops_at_the_request_cap(self) -> None:
        calls: list[int] = []

        async def call(user: int) -> None:
            calls.append(user)

        summary = await load.measure("cap", call, load.Load(3, 60.0, 10, 0))
        assert summary.requests == len(calls) == 10
        assert set(calls) <= {0, 1, 2}

    async def test_failures_are_counted_with_the_first_message(self) -> None:
        async def call(user: int) -> None:
            raise LookupError("book not found")

        summary = await load.measure("fail", call, load.Load(2, 60.0, 4, 0))
        assert summary.errors == summary.requests == 4
        assert summary.first_error == "book not found"


@pytest.fixture(scope="module")
def books_api(books_url: str) -> Iterator[str]:
    """The books app served by uvicorn in its own process, as `make run` does."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "books.app:create_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        ],
        env={**os.environ, "BOOKS_DATABASE_URL": books_url, "SERVICE_KEY": SERVICE_KEY},
        stdout=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "uvicorn exited"
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def bench_args(api: str, database: str, *extra: str, only: str = "books") -> list[str]:
    return [
        "--books-url", api, "--books-database-url", database, "--only", only,
        "--concurrency", "2", "--requests", "5", "--duration", "60", "--warmup", "0",
        *extra,
    ]  # fmt: skip


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (`make test` installs it)"
)
class TestBenchCommand:
    def test_tiny_run_prints_every_scenario_and_the_ratio(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_books(books_url, count=50)
        assert cli.main(bench_args(books_api, books_url, "--min-books", "10")) == 0
        output = capsys.readouterr().out
        for name in (
            "GET /health",
            "GET /v1/books/{id}",
            "raw psycopg SELECT by id",
            "bare FastAPI (the framework's floor)",
            "over 64 connections (open loop)",
            "over 256 connections (open loop)",
            "GET /v1/books?limit=20 ",
            "GET /v1/books?limit=20&offset=50000",
            "raw psycopg page at offset 50,000: plain OFFSET",
            "raw psycopg page at offset 50,000: ids first",
            "raw psycopg page at offset 50,000: the API's (from its day), and total",
            "POST /v1/books",
        ):
            assert name in output, output
        assert "API/raw for GET by id: RPS" in output
        assert "first error" not in output
        assert scalar(db, "SELECT count(*) FROM books") == 55

    def test_web_section_puts_each_page_next_to_its_api_call(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_books(books_url, count=30)
        env = {
            "WEB_BOOKS_URL": books_api,
            "WEB_SECRET_KEY": "bench-test-secret-key-0123456789abcdef",
        }
        with ServiceProcess("web.app:create_app", free_port(), env) as web:
            args = bench_args(books_api, books_url, "--min-books", "10", only="web")
            assert cli.main([*args, "--web-url", web.url, "--web-concurrency", "2"]) == 0
        output = capsys.readouterr().out
        for name in (
            "GET / (catalog, page 1)",
            "GET /v1/books?limit=12 (its API call)",
            "GET /?q=the (search)",
            "GET /books/{id} (book page)",
            "GET /v1/books/{id} (its API call)",
        ):
            assert name in output, output
        assert "first error" not in output
        assert "2 concurrent users" in output

    def test_tracing_section_runs_off_and_on_in_turn_and_counts_the_spans(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_books(books_url, count=20)
        assert cli.main(bench_args(books_api, books_url, only="tracing")) == 0
        output = capsys.readouterr().out
        rows = [line.split("  ")[0] for line in output.splitlines() if "tracing o" in line]
        assert rows[:4] == [
            f"GET /v1/books/{{id}} tracing {state} (round {n})"
            for n in (1, 2)
            for state in ("off", "on")
        ], output
        spans = re.search(r"the receiver got ([\d,]+) spans", output)
        assert spans is not None, output
        assert int(spans[1].replace(",", "")) >= 10  # 10 traced requests, 3 spans each
        assert "tracing on/off: RPS" in output
        assert "first error" not in output

    def test_tracing_section_without_books_is_skipped_with_a_note(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert cli.main(bench_args(books_api, books_url, only="tracing")) == 1
        assert "tracing: skipped - the catalog has no active books" in capsys.readouterr().out

    def test_seed_option_fills_the_catalog_to_the_minimum(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_books(books_url, count=20)
        args = bench_args(books_api, books_url, "--min-books", "60", "--seed")
        assert cli.main(args) == 0
        assert "books: 60 active books" in capsys.readouterr().out

    def test_too_small_catalog_says_how_to_seed(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_books(books_url, count=20)
        assert cli.main(bench_args(books_api, books_url, "--min-books", "100")) == 1
        output = capsys.readouterr().out
        assert "books: skipped" in output
        assert "SEED_BOOKS=80 make seed" in output
        assert scalar(db, "SELECT count(*) FROM books") == 20

    def test_unreachable_service_is_skipped_with_a_note(
        self, books_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        api = f"http://127.0.0.1:{free_port()}"
        assert cli.main(bench_args(api, books_url)) == 1
        assert f"books: skipped - no books service at {api}" in capsys.readouterr().out

    def test_without_wrk_the_books_section_says_how_to_install_it(
        self,
        books_api: str,
        books_url: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("PATH", "/nonexistent")
        assert cli.main(bench_args(books_api, books_url)) == 1
        output = capsys.readouterr().out
        assert (
            "books: skipped - wrk is not installed (Debian/Ubuntu: `apt-get install wrk`)" in output
        )

    def test_refuses_non_local_targets(self, books_url: str) -> None:
        with pytest.raises(SystemExit):
            cli.parse_args(bench_args("http://example.com", books_url))

    @pytest.mark.parametrize("option", ["--orders-url", "--redis-url", "--web-url"])
    def test_refuses_non_local_orders_and_redis(self, books_url: str, option: str) -> None:
        with pytest.raises(SystemExit):
            cli.parse_args(bench_args("http://127.0.0.1:1", books_url, option, "redis://x"))


class TestRedisDatabase:
    def test_switches_the_database_of_the_same_server(self) -> None:
        assert stack.redis_database("redis://127.0.0.1:6380/0", 1) == "redis://127.0.0.1:6380/1"
        assert stack.redis_database("redis://127.0.0.1:6380", 1) == "redis://127.0.0.1:6380/1"


@pytest.fixture(scope="module")
def orders_database(postgres_server_url: str) -> Iterator[str]:
    url = create_database(postgres_server_url, "bench_orders")
    config = Config(str(ROOT / "orders" / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    yield url
    drop_database(postgres_server_url, url)


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Valkey of this module alone: the relay and workers below listen on the stack's
    queue names, which other test sessions sharing a Redis would feed."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-valkey-") as folder,
        EmbeddedValkey(Path(folder), free_port(), persist=False) as server,
    ):
        yield server.url


@contextmanager
def module_process(module: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m <module>` until the end of the block, then SIGTERM (its clean stop)."""
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def orders_stack(books_api: str, orders_database: str, own_redis: str) -> Iterator[str]:
    """Orders with its relay and the workers, as `make run` runs them; the orders URL."""
    env = {
        "ORDERS_DATABASE_URL": orders_database,
        "ORDERS_BOOKS_URL": books_api,
        "SERVICE_KEY": SERVICE_KEY,
        "REDIS_URL": own_redis,
    }
    with ServiceProcess("orders.app:create_app", free_port(), env) as orders:
        relay_env = env | {"ORDERS_RELAY_METRICS_PORT": str(free_port())}
        worker_env = env | {
            "WORKERS_BOOKS_URL": books_api,
            "WORKERS_ORDERS_URL": orders.url,
            "WORKERS_METRICS_PORT": "0",
        }
        with (
            module_process("orders.relay", relay_env),
            module_process("workers.worker", worker_env),
        ):
            yield orders.url


def order_args(
    books_api: str, books_url: str, orders_url: str, orders_database: str, redis_url: str
) -> list[str]:
    return [
        *bench_args(books_api, books_url, only="orders"),
        *("--only", "workers", "--only", "saga"),
        *("--orders-url", orders_url, "--orders-database-url", orders_database),
        *("--redis-url", redis_url, "--worker-jobs", "4"),
        *("--saga-rate", "10", "--saga-duration", "0.3"),
    ]


def order_statuses(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())


class TestOrdersWorkersAndSagaSections:
    def test_tiny_run_prints_every_row_and_settles_every_order(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        orders_stack: str,
        orders_database: str,
        own_redis: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_books(books_url, count=20)
        monkeypatch.setenv("SERVICE_KEY", SERVICE_KEY)
        args = order_args(books_api, books_url, orders_stack, orders_database, own_redis)
        assert cli.main(args) == 0
        output = capsys.readouterr().out
        for name in (
            "POST /v1/orders (3 items)",
            "GET /v1/orders/{id}",
            "raw psycopg SELECT order with its lines",
            "API/raw for GET by id: RPS",
            "GET /v1/orders?limit=20",
            "raw psycopg page 1 with its lines and total",
            "API/raw for page 1: RPS",
            "rq hello world",
            "no-op job",
            "place_order job",
            "afterwards: 4 confirmed",
            "POST /v1/orders at 10/s",
            "commit -> confirmed",
            "3 orders placed: 3 confirmed, 0 rejected, 0 pending",
        ):
            assert name in output, output
        assert "first error" not in output
        assert "skipped" not in output
        # 5 placed by the orders section, 4 written for the workers, 3 by the saga section.
        assert order_statuses(orders_database) == {"confirmed": 12}
        # The bench's service-key check releases `bench:key-check`, which books fences.
        reservations = scalar(
            db, "SELECT count(*) FROM stock_reservations WHERE reference LIKE 'order:%'"
        )
        assert reservations == 12

    def test_place_order_row_is_skipped_without_a_service_key(
        self,
        books_api: str,
        books_url: str,
        orders_database: str,
        own_redis: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.delenv("SERVICE_KEY", raising=False)
        monkeypatch.setenv("STACK_DATA_DIR", str(tmp_path))
        before = order_statuses(orders_database)
        args = [
            *bench_args(books_api, books_url, only="workers"),
            *("--redis-url", own_redis, "--worker-jobs", "2"),
            *("--orders-database-url", orders_database),
        ]
        assert cli.main(args) == 0
        output = capsys.readouterr().out
        assert "no-op job" in output
        assert "place_order job: skipped - no SERVICE_KEY and no" in output
        assert order_statuses(orders_database) == before

    def test_unreachable_orders_and_redis_are_skipped_with_notes(
        self, books_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        orders_url = f"http://127.0.0.1:{free_port()}"
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
        args = [
            *bench_args(orders_url, books_url, only="orders"),
            *("--only", "workers", "--only", "saga"),
            *("--orders-url", orders_url, "--redis-url", redis_url),
        ]
        assert cli.main(args) == 1
        output = capsys.readouterr().out
        assert f"orders: skipped - no orders service at {orders_url}" in output
        assert "workers: skipped - no Redis at redis://127.0.0.1:" in output
        assert f"saga: skipped - no orders service at {orders_url}" in output


def sleep_instead_of_working(redis_url: str, queue_name: str, processes: int) -> None:
    time.sleep(60)


class TestWorkerRow:
    def test_a_stuck_setup_becomes_a_failed_row_within_the_timeout(self, own_redis: str) -> None:
        stuck = worker_bench.Setup("stuck", 1, sleep_instead_of_working)
        row = jobs.worker_row("stuck", stuck, own_redis, 2, timeout_s=0.5)
        assert (row.requests, row.errors) == (2, 2)
        assert row.first_error == "stuck finished 0 of 2 jobs in 0.5 s"


class TestLoanSlots:
    def test_each_free_slot_and_each_book_is_used_once(self) -> None:
        slots = LoanSlots([1, 1, 2], [10, 11, 12, 13], random.Random(5))
        pairs = [slots.take() for _ in range(3)]
        assert sorted(member for member, _ in pairs) == [1, 1, 2]
        assert len({book for _, book in pairs}) == 3
        with pytest.raises(LookupError, match="no member with a free loan slot"):
            slots.take()

    def test_a_book_the_member_has_out_is_never_picked(self) -> None:
        slots = LoanSlots([1], [10, 11], random.Random(5), used={(1, 10)})
        assert slots.take() == (1, 11)
        slots = LoanSlots([1], [10], random.Random(5), used={(1, 10)})
        with pytest.raises(LookupError, match="no book with a copy on the shelf left"):
            slots.take()


class TestScenariosVariable:
    def test_selects_the_sections_as_make_bench_passes_them(
        self, books_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SCENARIOS", "lending,saga")
        args = [arg for arg in bench_args("http://127.0.0.1:1", books_url) if arg != "--only"]
        args.remove("books")
        assert cli.parse_args(args)[1] == ["lending", "saga"]

    def test_only_wins_over_the_variable(
        self, books_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SCENARIOS", "lending")
        assert cli.parse_args(bench_args("http://127.0.0.1:1", books_url))[1] == ["books"]

    def test_unknown_section_is_refused(
        self, books_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SCENARIOS", "lendng")
        with pytest.raises(SystemExit):
            cli.parse_args([])


class TestLendingSection:
    def test_tiny_run_prints_every_row_with_its_baseline(
        self,
        books_api: str,
        books_url: str,
        db: psycopg.Connection[Any],
        orders_stack: str,
        orders_database: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_lending(
            SCENARIOS["minimal"], books_url=books_url, orders_url=orders_database, truncate=True
        )
        args = [
            *bench_args(books_api, books_url, only="lending"),
            *("--orders-url", orders_stack, "--orders-database-url", orders_database),
            *("--lending-rate", "10", "--lending-duration", "0.3"),
        ]
        assert cli.main(args) == 0
        output = capsys.readouterr().out
        for name in (
            "GET /v1/members/{id}/borrows?limit=20",
            "raw psycopg member history page",
            "GET /v1/borrows?status=overdue&limit=50",
            "raw psycopg overdue page, offset 0",
            "GET /v1/library/summary",
            "raw psycopg summary",
            "GET /v1/library/popular?days=30",
            "raw psycopg popular books",
            "GET /v1/library/members/top?days=30",
            "raw psycopg top members",
            "POST /v1/borrows",
            "raw psycopg borrow",
            "POST /v1/borrows at 10/s",
            "request -> active (API, relay, queue, worker)",
            "raw psycopg borrow + checkout + activate at 10/s",
            "API/raw for a borrow request: RPS",
        ):
            assert name in output, output
        # A book's last copy may go to an earlier borrow of the run: that one is held, or
        # refused when no copy is left at all, so fewer than the 3 placed may have ended.
        ended = re.search(r"request -> active: the (\d) borrows ended", output)
        assert ended is not None, output
        assert 1 <= int(ended[1]) <= 3
        errors = [line for line in output.splitlines() if "first error" in line]
        assert all("not all active" in line or "no copy of book" in line for line in errors), errors
        assert "skipped" not in output
        # Every borrow of the run became a loan with its copy out at books.
        with psycopg.connect(orders_database) as conn:
            pending = conn.execute("SELECT count(*) FROM borrows WHERE status = 'pending'")
            assert pending.fetchone() == (0,), output
        out = scalar(db, "SELECT count(*) FROM copy_loans WHERE state = 'out'")
        lent = scalar(db, "SELECT sum(copies_total - copies_available) FROM books")
        assert out == lent


class TestCirculationSection:
    def test_tiny_run_prints_every_row_and_leaves_the_data_as_it_was(
        self,
        books_api: str,
        books_url: str,
        orders_database: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        seed_lending(
            SCENARIOS["minimal"], books_url=books_url, orders_url=orders_database, truncate=True
        )
        with psycopg.connect(orders_database) as conn:
            before = conn.execute(
                "SELECT status, count(*), sum(extract(epoch FROM due_at)) FROM borrows"
                " GROUP BY status ORDER BY status"
            ).fetchall()
        args = [
            *bench_args(books_api, books_url, only="circulation"),
            *("--orders-database-url", orders_database),
        ]
        assert cli.main(args) == 0
        output = capsys.readouterr().out
        for name in (
            "resolve a member's policy",
            "lost-item batch (500)",
            "closing batch",
            "policy preview",
            "lost-item job:",
            "closing of 7 days:",
            "preview of a doubled fine:",
        ):
            assert name in output, output
        assert "skipped" not in output
        with psycopg.connect(orders_database) as conn:
            after = conn.execute(
                "SELECT status, count(*), sum(extract(epoch FROM due_at)) FROM borrows"
                " GROUP BY status ORDER BY status"
            ).fetchall()
            assert conn.execute("SELECT count(*) FROM closings").fetchone() == (0,)
        assert after == before
