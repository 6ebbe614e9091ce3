"""Lending end to end: orders' public API -> outbox -> the real relay -> RQ -> the loan
jobs -> books' copies and orders' loans and holds; notices mailed to a real SMTP sink."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from devstack.mail import MailSink
from devstack.servers import EmbeddedValkey, free_port
from devstack.services import ServiceProcess
from servicekit.relay import JobPolicy
from tests.conftest import (
    Books,
    Library,
    WorkerProcess,
    enqueue,
    fetch,
    queue,
    reconfigure,
    relay_orders,
    wait_until,
    work,
)
from workers import clients, loans
from workers.errors import ServiceUnavailable
from workers.notifications import send_notice


def copies(books: Books, book_id: int) -> int:
    response = books.http.get(f"/v1/books/{book_id}")
    assert response.status_code == 200, response.text
    return response.json()["copies_available"]  # type: ignore[no-any-return]


def ledger(books_database_url: str, book_id: int) -> dict[str, str]:
    with psycopg.connect(books_database_url) as conn:
        rows = conn.execute(
            "SELECT reference, state FROM copy_loans WHERE book_id = %s", [book_id]
        ).fetchall()
    return {str(reference): str(state) for reference, state in rows}


class TestBorrow:
    def test_a_free_copy_makes_the_loan_active(
        self, saga_env: dict[str, str], settle, library: Library, books: Books, books_database_url
    ) -> None:
        book = books.create_book(stock=None, copies_total=2)
        borrow = library.borrow(library.member(), book)
        assert borrow["status"] == "pending"

        settle()

        loan = library.get(f"/v1/borrows/{borrow['id']}")
        assert loan["status"] == "active"
        assert loan["due_at"] is not None
        assert copies(books, book["id"]) == 1
        assert ledger(books_database_url, book["id"]) == {f"borrow:{borrow['id']}": "out"}

    def test_no_free_copy_queues_a_hold_instead(
        self, saga_env: dict[str, str], settle, library: Library, books: Books
    ) -> None:
        book = books.create_book(stock=None, copies_total=1)
        first = library.borrow(library.member(), book)
        second = library.borrow(library.member(), book)
        settle()

        assert library.get(f"/v1/borrows/{first['id']}")["status"] == "active"
        held = library.get(f"/v1/borrows/{second['id']}")
        assert held["status"] == "held"
        hold = library.get(f"/v1/holds/{held['hold_id']}")
        assert (hold["status"], hold["position"]) == ("waiting", 1)
        assert library.get(f"/v1/members/{second['member_id']}")["loans_out"] == 0

    def test_a_job_killed_after_the_checkout_runs_again_without_a_second_copy(
        self, saga_env: dict[str, str], settle, library: Library, books: Books, books_database_url
    ) -> None:
        book = books.create_book(stock=None, copies_total=3)
        borrow = library.borrow(library.member(), book)
        # What a worker killed between its two calls leaves behind: the copy is out,
        # the loan still pending. RQ runs the job again.
        payload = {"borrow_id": borrow["id"], "book_id": book["id"]}
        assert (
            clients.books().check_out_copy(reference=f"borrow:{borrow['id']}", book_id=book["id"])
            == "checked_out"
        )
        assert loans.check_out(payload) == "active"
        assert loans.check_out(payload) == "active"
        settle()

        assert copies(books, book["id"]) == 2
        assert library.get(f"/v1/borrows/{borrow['id']}")["status"] == "active"

    def test_a_book_deleted_meanwhile_rejects_the_borrow(
        self, saga_env: dict[str, str], settle, library: Library, books: Books
    ) -> None:
        book = books.create_book(stock=None, copies_total=1)
        borrow = library.borrow(library.member(), book)
        books.http.delete(f"/v1/books/{book['id']}")
        settle()

        rejected = library.get(f"/v1/borrows/{borrow['id']}")
        assert rejected["status"] == "rejected"
        assert rejected["rejection_reason"] == "the book was removed from the catalog"


class TestReturnAndHolds:
    def test_a_returned_copy_goes_to_the_first_hold_never_the_shelf(
        self,
        saga_env: dict[str, str],
        mailbox: MailSink,
        settle,
        library: Library,
        books: Books,
        books_database_url: str,
    ) -> None:
        book = books.create_book(stock=None, copies_total=1, title="Middlemarch")
        loan = library.borrow(library.member(), book)
        waiting = library.member(name="Dorothea", email="dorothea@example.org")
        later = library.member()
        settle()
        first_hold = library.hold(waiting, book)
        second_hold = library.hold(later, book)
        settle()

        library.post(f"/v1/borrows/{loan['id']}/return")
        settle()

        ready = library.get(f"/v1/holds/{first_hold['id']}")
        assert ready["status"] == "ready"
        assert library.get(f"/v1/holds/{second_hold['id']}")["position"] == 1
        assert copies(books, book["id"]) == 0
        assert ledger(books_database_url, book["id"]) == {
            f"borrow:{loan['id']}": "passed",
            f"hold:{first_hold['id']}": "out",
        }
        [mail] = mailbox.messages()
        assert mail["To"] == "dorothea@example.org"
        assert mail["Subject"] == "Ready for pickup: Middlemarch"
        assert "Dear Dorothea" in mail.get_content()

        loan2 = library.post(f"/v1/holds/{first_hold['id']}/checkout")
        settle()
        assert loan2["status"] == "active"
        assert ledger(books_database_url, book["id"])[f"borrow:{loan2['id']}"] == "out"
        assert copies(books, book["id"]) == 0

    def test_two_copies_returned_at_once_serve_two_holds(
        self, saga_env: dict[str, str], settle, library: Library, books: Books
    ) -> None:
        book = books.create_book(stock=None, copies_total=2)
        loans_out = [library.borrow(library.member(), book) for _ in range(2)]
        settle()
        holds = [library.hold(library.member(), book) for _ in range(3)]
        settle()
        for loan in loans_out:
            library.post(f"/v1/borrows/{loan['id']}/return")
        settle()

        statuses = [library.get(f"/v1/holds/{h['id']}")["status"] for h in holds]
        assert statuses == ["ready", "ready", "waiting"]
        assert copies(books, book["id"]) == 0

    def test_returned_with_nobody_waiting_goes_back_on_the_shelf(
        self, saga_env: dict[str, str], settle, library: Library, books: Books
    ) -> None:
        book = books.create_book(stock=None, copies_total=1)
        loan = library.borrow(library.member(), book)
        settle()
        library.post(f"/v1/borrows/{loan['id']}/return")
        library.post(f"/v1/borrows/{loan['id']}/return")
        settle()
        assert copies(books, book["id"]) == 1

    def test_a_hold_on_a_shelved_book_is_ready_at_once(
        self, saga_env: dict[str, str], settle, library: Library, books: Books
    ) -> None:
        book = books.create_book(stock=None, copies_total=1)
        hold = library.hold(library.member(), book)
        settle()
        assert library.get(f"/v1/holds/{hold['id']}")["status"] == "ready"
        assert copies(books, book["id"]) == 0

    def test_an_uncollected_hold_expires_and_its_copy_moves_to_the_next(
        self,
        saga_env: dict[str, str],
        settle,
        library: Library,
        books: Books,
        orders_database_url: str,
    ) -> None:
        book = books.create_book(stock=None, copies_total=1)
        first = library.hold(library.member(), book)
        second = library.hold(library.member(), book)
        settle()
        with psycopg.connect(orders_database_url, autocommit=True) as conn:
            conn.execute("UPDATE holds SET pickup_by = now() - interval '1 second'")
        assert library.sweep()["expired_holds"] == 1
        settle()

        assert library.get(f"/v1/holds/{first['id']}")["status"] == "expired"
        assert library.get(f"/v1/holds/{second['id']}")["status"] == "ready"
        assert copies(books, book["id"]) == 0


class TestLostAndClosed:
    def test_a_lost_copy_returned_goes_to_the_next_hold(
        self,
        saga_env: dict[str, str],
        settle,
        library: Library,
        books: Books,
        books_database_url: str,
        orders_database_url: str,
    ) -> None:
        book = books.create_book(stock=None, copies_total=1)
        loan = library.borrow(library.member(), book)
        settle()
        waiting = library.hold(library.member(), book)
        with psycopg.connect(orders_database_url, autocommit=True) as conn:
            conn.execute("UPDATE lending_policies SET lost_after_days = 10")
            conn.execute("UPDATE borrows SET due_at = now() - interval '11 days'")
        assert library.sweep()["lost_loans"] == 1
        settle()
        assert ledger(books_database_url, book["id"]) == {f"borrow:{loan['id']}": "out"}

        library.post(f"/v1/borrows/{loan['id']}/return")
        settle()

        assert library.get(f"/v1/holds/{waiting['id']}")["status"] == "ready"
        assert ledger(books_database_url, book["id"])[f"hold:{waiting['id']}"] == "out"

    def test_a_closing_moves_the_due_dates_through_its_job(
        self, saga_env: dict[str, str], settle, library: Library, books: Books, orders_database_url
    ) -> None:
        book = books.create_book(stock=None, copies_total=3)
        loans_out = [library.borrow(library.member(), book) for _ in range(3)]
        settle()
        with psycopg.connect(orders_database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE borrows SET due_at = date_trunc('day', now()) + interval '2 days 9 hours'"
            )
            day = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date + 2").fetchone()
        assert day is not None
        body = {"first_day": str(day[0]), "last_day": str(day[0]), "reason": "Burst pipe"}
        response = library.http.post("/v1/calendar/closings", json=body)
        assert response.status_code == 202, response.text

        settle()

        closing = library.get(response.headers["location"])
        assert (closing["status"], closing["loans_moved"]) == ("done", 3)
        for loan in loans_out:
            assert library.get(f"/v1/borrows/{loan['id']}")["due_at"].startswith(
                str(day[0] + timedelta(days=1))
            )


class TestNotices:
    def test_the_sweep_run_twice_mails_each_notice_once(
        self,
        saga_env: dict[str, str],
        mailbox: MailSink,
        settle,
        library: Library,
        books: Books,
        orders_database_url: str,
        connection: redis.Redis,
    ) -> None:
        book = books.create_book(stock=None, copies_total=2, title="Persuasion")
        member = library.member(name="Anne", email="anne@example.org")
        loan = library.borrow(member, book)
        settle()
        with psycopg.connect(orders_database_url, autocommit=True) as conn:
            conn.execute("UPDATE borrows SET due_at = now() - interval '2 days'")

        for _ in range(2):
            loans.library_sweep({})
            settle()

        [mail] = mailbox.messages()
        assert mail["Subject"] == "Overdue: Persuasion"
        assert mail["To"] == "anne@example.org"
        assert "late fee" in mail.get_content()
        assert library.get(f"/v1/borrows/{loan['id']}")["overdue"] is True

    def test_the_sweep_is_scheduled_once_per_time_slot(
        self, saga_env: dict[str, str], connection: redis.Redis
    ) -> None:
        first = loans.LIBRARY_SWEEP.schedule(connection)
        assert first is not None
        assert loans.LIBRARY_SWEEP.schedule(connection) is None
        scheduled = loans.LIBRARY_SWEEP.schedule(connection, at_slot=10**6)
        assert scheduled is not None
        assert loans.LIBRARY_SWEEP.schedule(connection, at_slot=10**6) is None
        assert scheduled.id in queue(connection, "maintenance").scheduled_job_registry.get_job_ids()

    def test_an_smtp_server_that_is_down_retries_the_notice(
        self, saga_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        reconfigure(monkeypatch, {"SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
        notice = {
            "notice_id": 1,
            "kind": "overdue_1",
            "member_id": 1,
            "email": "a@example.org",
            "name": "A",
            "book_id": 1,
            "book_title": "T",
            "deadline": "2026-12-01T00:00:00Z",
        }
        with pytest.raises(ServiceUnavailable):
            send_notice(notice)


class TestRedisOutage:
    def test_borrows_are_accepted_while_redis_is_down_and_settled_once_it_is_back(
        self,
        saga_env: dict[str, str],
        orders_database_url: str,
        library: Library,
        books: Books,
    ) -> None:
        book = books.create_book(stock=None, copies_total=5)
        port = free_port()
        down_url = f"redis://127.0.0.1:{port}/0"
        placed = [library.borrow(library.member(), book)["id"] for _ in range(3)]
        with pytest.raises(redis.ConnectionError):
            relay_orders(orders_database_url, down_url)

        folder = Path(tempfile.mkdtemp(prefix="bookstore-test-outage-"))
        try:
            with EmbeddedValkey(folder, port, persist=False):
                connection = redis.Redis.from_url(down_url)
                assert relay_orders(orders_database_url, down_url) == 3
                work(connection, "borrows")
                connection.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

        assert [library.get(f"/v1/borrows/{b}")["status"] for b in placed] == ["active"] * 3
        assert copies(books, book["id"]) == 2


class TestKilledWorker:
    @pytest.mark.timeout(300)
    def test_a_borrow_whose_worker_was_killed_mid_job_becomes_one_loan(
        self,
        saga_env: dict[str, str],
        start_worker: Callable[..., WorkerProcess],
        orders_service: ServiceProcess,
        connection: redis.Redis,
        library: Library,
        books: Books,
        books_database_url: str,
    ) -> None:
        book = books.create_book(stock=None, copies_total=2)
        borrow = library.borrow(library.member(), book)
        policy = JobPolicy(timeout_s=10)
        env = {"WORKERS_ORDERS_URL": orders_service.url, "WORKERS_PROCESSES": "1"}
        killed = start_worker(**env, WORKERS_HTTP_TIMEOUT_S="60")
        # The job's check-out at books waits on this lock of the book's row.
        with psycopg.connect(books_database_url) as conn:
            conn.execute("SELECT 1 FROM books WHERE id = %s FOR UPDATE", [book["id"]])
            job = enqueue(
                connection,
                "workers.loans.check_out",
                {"borrow_id": borrow["id"], "book_id": book["id"]},
                queue_name="borrows",
                policy=policy,
            )
            wait_until(
                lambda: fetch(connection, job.id).get_status() == "started",
                timeout_s=30,
                what="the worker to start the job",
            )
            killed.kill_all()

        start_worker(**env)
        # The abandoned job's entry expires `timeout + 60` s after it started; then at
        # most two maintenance rounds and the first retry interval.
        wait_until(
            lambda: fetch(connection, job.id).get_status() == "finished",
            timeout_s=policy.timeout_s + 60 + 2 * 15 + 15,
            what="the abandoned job to run again",
        )
        assert library.get(f"/v1/borrows/{borrow['id']}")["status"] == "active"
        assert copies(books, book["id"]) == 1
        assert ledger(books_database_url, book["id"]) == {f"borrow:{borrow['id']}": "out"}
