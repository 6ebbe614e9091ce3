"""Settings from the environment, the predecessor's names included."""

from __future__ import annotations

import sys

import httpx
import pytest

from books.config import ALIASES, Settings
from devstack.servers import free_port
from devstack.services import ManagedProcess

PREDECESSOR_ENV = {"BOOKS_DB_DSN": "postgresql://books_user:pw@db:5432/books_db", "PORT": "9001"}


@pytest.fixture
def predecessor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The predecessor's books `.env`, unchanged, and nothing of ours."""
    for ours in ALIASES.values():
        monkeypatch.delenv(ours, raising=False)
    for name, value in PREDECESSOR_ENV.items():
        monkeypatch.setenv(name, value)


class TestThePredecessorsNames:
    @pytest.mark.usefixtures("predecessor_env")
    def test_its_env_file_configures_the_service(self) -> None:
        settings = Settings()
        assert settings.database_url == PREDECESSOR_ENV["BOOKS_DB_DSN"]
        assert settings.port == 9001

    @pytest.mark.usefixtures("predecessor_env")
    def test_ours_win_when_both_are_set(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BOOKS_DATABASE_URL", "postgresql://ours@h/db")
        monkeypatch.setenv("BOOKS_PORT", "1234")
        settings = Settings()
        assert (settings.database_url, settings.port) == ("postgresql://ours@h/db", 1234)

    def test_defaults(self) -> None:
        settings = Settings(_env_file=None)
        assert (settings.host, settings.port) == ("127.0.0.1", 8001)

    def test_python_m_books_serves_on_port_and_names_the_aliases(
        self, books_database_url: str
    ) -> None:
        """The image's command, started with the predecessor's `.env` alone."""
        port = free_port()
        env = {"BOOKS_DB_DSN": books_database_url, "PORT": str(port)}
        with ManagedProcess(
            [sys.executable, "-m", "books"], f"http://127.0.0.1:{port}/health", env
        ) as books:
            assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "healthy"
        logged = books.output()
        assert "BOOKS_DB_DSN (the predecessor's name) is used as BOOKS_DATABASE_URL" in logged
        assert "PORT (the predecessor's name) is used as BOOKS_PORT" in logged
