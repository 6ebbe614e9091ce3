"""Settings from the environment: the stack's shared variables are read without the prefix."""

from __future__ import annotations

from orders.config import Settings
from tests.conftest import serving


class TestSettingsFromEnv:
    def test_reads_the_shared_service_key_and_redis_url(self):
        settings = Settings.from_env(
            {
                "SERVICE_KEY": "k1",
                "REDIS_URL": "redis://r:6379/1",
                "ORDERS_RELAY_METRICS_PORT": "9200",
            }
        )
        assert (settings.service_key, settings.redis_url) == ("k1", "redis://r:6379/1")
        assert settings.relay_metrics_port == 9200

    def test_a_prefixed_variable_wins(self):
        settings = Settings.from_env({"SERVICE_KEY": "shared", "ORDERS_SERVICE_KEY": "own"})
        assert settings.service_key == "own"

    def test_defaults_leave_the_internal_api_off(self):
        settings = Settings.from_env({})
        assert settings.service_key is None
        assert settings.redis_url == "redis://127.0.0.1:6380/0"
        assert settings.relay_metrics_port == 9101

    def test_relay_gets_a_plain_psycopg_url(self):
        for url in ("postgresql://u@h/db", "postgresql+psycopg://u@h/db", "postgres://u@h/db"):
            assert Settings(database_url=url).psycopg_database_url == "postgresql://u@h/db"


PREDECESSOR_ENV = {
    "DATABASE_URL": "postgresql://orders_user:pw@db:5432/orders_db",
    "BOOKS_SERVICE_URL": "http://books:8001",
    "PORT": "9082",
    "ORDERS_ENABLE_IDEMPOTENCY": "false",
    "HTTP_TIMEOUT": "10s",
    "DB_TIMEOUT": "500ms",
    "CIRCUIT_THRESHOLD": "3",
}


class TestThePredecessorsNames:
    def test_its_env_file_configures_the_service(self):
        """The predecessor's orders `.env`, unchanged (its timeouts are Go durations)."""
        settings = Settings.from_env(PREDECESSOR_ENV)
        assert settings.database_url == PREDECESSOR_ENV["DATABASE_URL"]
        assert settings.books_url == "http://books:8001"
        assert settings.port == 9082
        assert settings.idempotency_enabled is False
        assert settings.books_timeout_s == 10.0
        assert settings.db_pool_timeout_s == 0.5
        assert settings.books_breaker_threshold == 3

    def test_ours_win_when_both_are_set(self):
        ours = {
            "ORDERS_DATABASE_URL": "postgresql://ours@h/db",
            "ORDERS_BOOKS_URL": "http://ours:1",
            "ORDERS_PORT": "1234",
            "ORDERS_IDEMPOTENCY_ENABLED": "true",
            "ORDERS_BOOKS_TIMEOUT_S": "1.5",
            "ORDERS_DB_POOL_TIMEOUT_S": "2",
            "ORDERS_BOOKS_BREAKER_THRESHOLD": "7",
        }
        settings = Settings.from_env(PREDECESSOR_ENV | ours)
        assert settings.database_url == "postgresql://ours@h/db"
        assert settings.books_url == "http://ours:1"
        assert settings.port == 1234
        assert settings.idempotency_enabled is True
        assert (settings.books_timeout_s, settings.db_pool_timeout_s) == (1.5, 2.0)
        assert settings.books_breaker_threshold == 7

    async def test_every_alias_is_named_in_a_startup_log_line(self, monkeypatch, capsys):
        from orders.app import create_app
        from orders.config import ALIASES, get_settings

        for name, value in PREDECESSOR_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ORDERS_BOOKS_URL", "http://ours:1")
        get_settings.cache_clear()
        try:
            app = create_app()
        finally:
            get_settings.cache_clear()
        async with serving(app):
            pass
        logged = capsys.readouterr().out
        assert set(ALIASES) == set(PREDECESSOR_ENV)
        assert "DATABASE_URL (the predecessor's name) is used as ORDERS_DATABASE_URL" in logged
        assert (
            "BOOKS_SERVICE_URL (the predecessor's name) is ignored: ORDERS_BOOKS_URL is set"
            in logged
        )
