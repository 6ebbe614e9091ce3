from __future__ import annotations

import psycopg
from alembic import command

from devstack.pytest_plugin import alembic_config, create_database, drop_database
from tests.conftest import TABLES


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        ).fetchall()
    return {row[0] for row in rows}


class TestMigrations:
    def test_upgrade_downgrade_upgrade(self, postgres_server_url):
        url = create_database(postgres_server_url, "orders_migrations")
        try:
            config = alembic_config("orders", url)
            command.upgrade(config, "head")
            assert tables(url) == {
                *TABLES,
                "order_counts",
                "api_keys",
                "member_categories",
                "lending_policies",
            }
            command.downgrade(config, "base")
            assert tables(url) == set()
            command.upgrade(config, "head")
            assert tables(url) == {
                *TABLES,
                "order_counts",
                "api_keys",
                "member_categories",
                "lending_policies",
            }
        finally:
            drop_database(postgres_server_url, url)

    def test_order_counts_start_from_the_orders_already_there(self, postgres_server_url):
        url = create_database(postgres_server_url, "orders_counts")
        try:
            config = alembic_config("orders", url)
            command.upgrade(config, "0005")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO orders (total_price) SELECT 1 FROM generate_series(1, 40)"
                )
                conn.execute("UPDATE orders SET status = 'confirmed' WHERE id <= 10")
            command.upgrade(config, "head")
            with psycopg.connect(url) as conn:
                kept = conn.execute(
                    "SELECT status, sum(orders)::int FROM order_counts GROUP BY 1 ORDER BY 1"
                ).fetchall()
                slots = conn.execute("SELECT count(*) FROM order_counts").fetchone()
        finally:
            drop_database(postgres_server_url, url)
        assert kept == [("cancelled", 0), ("confirmed", 10), ("pending", 30), ("rejected", 0)]
        assert slots == (64,)

    def test_outbox_has_an_index_for_undelivered_oldest_first(self, orders_database_url):
        with psycopg.connect(orders_database_url) as conn:
            row = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'outbox_undelivered_idx'"
            ).fetchone()
        assert row is not None
        assert "(id)" in row[0]
        assert "WHERE (delivered_at IS NULL)" in row[0]

    def test_status_check_rejects_unknown_status(self, orders_database_url):
        with psycopg.connect(orders_database_url) as conn:
            try:
                conn.execute("INSERT INTO orders (status, total_price) VALUES ('shipped', 1)")
            except psycopg.errors.CheckViolation:
                return
        raise AssertionError("an unknown status was accepted")

    def test_rejection_reason_is_present_exactly_when_rejected(self, orders_database_url):
        cases = [("rejected", None), ("rejected", "  "), ("pending", "why"), ("cancelled", "why")]
        with psycopg.connect(orders_database_url, autocommit=True) as conn:
            for status, reason in cases:
                try:
                    conn.execute(
                        "INSERT INTO orders (status, rejection_reason, total_price)"
                        " VALUES (%s, %s, 1)",
                        [status, reason],
                    )
                except psycopg.errors.CheckViolation:
                    continue
                raise AssertionError(f"accepted status {status} with reason {reason!r}")


class TestNoticesMigration:
    def test_notices_sent_before_keep_their_rows(self, postgres_server_url):
        """The daily overdue reminders become first overdue notices, marked sent with no
        sent_at (their outcome is unknown), and back again."""
        url = create_database(postgres_server_url, "orders_notices")
        try:
            config = alembic_config("orders", url)
            command.upgrade(config, "0015")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO members (id, name, email, status)"
                    " VALUES (1, 'A', 'a@x.org', 'active')"
                )
                conn.execute(
                    "INSERT INTO notices (kind, subject_id, member_id, day) VALUES"
                    " ('overdue', 7, 1, '2026-12-01'), ('overdue', 7, 1, '2026-12-02'),"
                    " ('due_soon', 8, 1, '2026-12-02')"
                )
            command.upgrade(config, "head")
            with psycopg.connect(url) as conn:
                upgraded = conn.execute(
                    "SELECT kind, subject_id, deadline, status, attempts, sent_at FROM notices"
                    " ORDER BY id"
                ).fetchall()
            command.downgrade(config, "0015")
            with psycopg.connect(url) as conn:
                downgraded = conn.execute("SELECT kind FROM notices ORDER BY id").fetchall()
        finally:
            drop_database(postgres_server_url, url)
        assert upgraded == [
            ("overdue_1", 7, None, "sent", 0, None),
            ("overdue_1", 7, None, "sent", 0, None),
            ("due_soon", 8, None, "sent", 0, None),
        ]
        assert downgraded == [("overdue",), ("overdue",), ("due_soon",)]
