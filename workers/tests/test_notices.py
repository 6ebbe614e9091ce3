"""Library notices end to end: orders' sweep -> outbox -> the real relay -> RQ -> mail to a
real SMTP sink, and each attempt's outcome back in orders' delivery record."""

from __future__ import annotations

from typing import Any

import psycopg
import redis

from devstack.mail import MailSink
from tests.conftest import Books, Library, fetch, release_scheduled, work
from workers.notifications import send_notice


def overdue_loans(library: Library, books: Books, member: dict[str, Any], *titles: str) -> None:
    for title in titles:
        library.borrow(member, books.create_book(stock=None, copies_total=1, title=title))


def due_days_ago(orders_database_url: str, days: int) -> None:
    with psycopg.connect(orders_database_url, autocommit=True) as conn:
        conn.execute("UPDATE borrows SET due_at = now() - make_interval(days => %s)", [days])


def notices_of(library: Library, member: dict[str, Any]) -> list[dict[str, Any]]:
    return library.get(f"/v1/members/{member['id']}/notices")["data"]  # type: ignore[no-any-return]


class TestDelivery:
    def test_queued_then_sent(
        self,
        saga_env: dict[str, str],
        mailbox: MailSink,
        settle,
        library: Library,
        books: Books,
        orders_database_url: str,
    ) -> None:
        member = library.member(name="Anne", email="anne@example.org")
        overdue_loans(library, books, member, "Persuasion")
        settle()
        due_days_ago(orders_database_url, 2)
        assert library.sweep()["notices"] == 1
        [queued] = notices_of(library, member)
        assert (queued["kind"], queued["status"], queued["attempts"]) == ("overdue_1", "queued", 0)

        settle()

        [mail] = mailbox.messages()
        assert (mail["Subject"], mail["X-Notice-Kind"]) == ("Overdue: Persuasion", "overdue_1")
        [sent] = notices_of(library, member)
        assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 1, None)
        assert sent["sent_at"] is not None

    def test_a_refused_mail_is_retried_and_then_sent(
        self,
        saga_env: dict[str, str],
        mailbox: MailSink,
        settle,
        library: Library,
        books: Books,
        orders_database_url: str,
        connection: redis.Redis,
    ) -> None:
        member = library.member()
        overdue_loans(library, books, member, "Emma")
        settle()
        due_days_ago(orders_database_url, 2)
        library.sweep()
        mailbox.refuse(1)
        settle()

        assert mailbox.messages() == []
        [retrying] = notices_of(library, member)
        assert (retrying["status"], retrying["attempts"]) == ("retrying", 1)
        assert "451" in retrying["last_error"]

        [job_id] = release_scheduled(connection, "notifications")
        work(connection, "notifications")

        assert fetch(connection, job_id).get_status() == "finished"
        assert len(mailbox.messages()) == 1
        [sent] = notices_of(library, member)
        assert (sent["status"], sent["attempts"]) == ("sent", 2)
        assert "451" in sent["last_error"]

    def test_after_the_last_retry_it_stays_failed_with_its_reason(
        self,
        saga_env: dict[str, str],
        mailbox: MailSink,
        settle,
        library: Library,
        books: Books,
        orders_database_url: str,
        connection: redis.Redis,
    ) -> None:
        member = library.member()
        overdue_loans(library, books, member, "Emma")
        settle()
        due_days_ago(orders_database_url, 2)
        library.sweep()
        mailbox.refuse(100)
        settle()
        while release_scheduled(connection, "notifications"):
            work(connection, "notifications")

        assert mailbox.messages() == []
        [failed] = notices_of(library, member)
        # The relay's policy: the first run and five retries.
        assert (failed["status"], failed["attempts"]) == ("failed", 6)
        assert "451" in failed["last_error"]
        listed = library.get("/v1/notices?status=failed")["data"]
        assert [notice["id"] for notice in listed] == [failed["id"]]


class TestDigest:
    def test_a_digest_member_gets_one_mail_with_all_the_notices_of_the_day(
        self,
        saga_env: dict[str, str],
        mailbox: MailSink,
        settle,
        library: Library,
        books: Books,
        orders_database_url: str,
    ) -> None:
        member = library.member(name="Emma", email="emma@example.org", notice_delivery="digest")
        overdue_loans(library, books, member, "Persuasion", "Mansfield Park")
        settle()
        due_days_ago(orders_database_url, 2)
        assert library.sweep()["notices"] == 2
        settle()
        assert mailbox.messages() == []

        with psycopg.connect(orders_database_url, autocommit=True) as conn:
            conn.execute("UPDATE notices SET day = day - 1")
        assert library.sweep()["digests"] == 1
        assert library.sweep()["digests"] == 0
        settle()

        [mail] = mailbox.messages()
        assert (mail["To"], mail["X-Notice-Kind"]) == ("emma@example.org", "digest")
        assert mail["Subject"] == "Your library: 2 notices"
        body = mail.get_content()
        assert "Overdue: Persuasion" in body
        assert "Overdue: Mansfield Park" in body
        statuses = {(n["status"], n["attempts"]) for n in notices_of(library, member)}
        assert statuses == {("sent", 1)}


class TestJobsOfBefore:
    def test_a_job_enqueued_before_the_overdue_kinds_mails_the_first_notice(
        self,
        saga_env: dict[str, str],
        mailbox: MailSink,
        settle,
        library: Library,
        books: Books,
        orders_database_url: str,
    ) -> None:
        member = library.member()
        overdue_loans(library, books, member, "Emma")
        settle()
        due_days_ago(orders_database_url, 2)
        library.sweep()
        [notice] = notices_of(library, member)
        payload = {
            "notice_id": notice["id"],
            "kind": "overdue",
            "member_id": member["id"],
            "email": member["email"],
            "name": member["name"],
            "book_id": 1,
            "book_title": "Emma",
            "deadline": notice["deadline"],
        }

        assert send_notice(payload) == "sent"

        [mail] = mailbox.messages()
        assert (mail["Subject"], mail["X-Notice-Kind"]) == ("Overdue: Emma", "overdue_1")
        assert notices_of(library, member)[0]["status"] == "sent"
