"""Settings from the environment: the stack's shared variables are read without the prefix."""

from __future__ import annotations

from orders.config import Settings


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
