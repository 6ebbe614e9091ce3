"""The watch that fails a test session when a key or password reaches a log line."""

from __future__ import annotations

import logging
from pathlib import Path

from devstack.secret_watch import SecretWatch, secrets_in


def test_secrets_are_named_like_keys_or_hide_in_urls() -> None:
    env = {
        "SERVICE_KEY": "s3rvice-key-value",
        "WEB_SECRET_KEY": "cookie-signing-secret",
        "REDIS_URL": "redis://:redis-pass-123@127.0.0.1:6379/0",
        "CLOUDINARY_URL": "cloudinary://123456:api-secret-xyz@cloud",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1/db",
        "API_KEY_SHORT": "abc",
        "PORT": "8001",
    }
    assert secrets_in(env) == {
        "s3rvice-key-value",
        "cookie-signing-secret",
        "redis-pass-123",
        "api-secret-xyz",
    }


def test_a_logged_secret_is_reported_masked_with_where_it_was(tmp_path: Path) -> None:
    watch = SecretWatch()
    watch.learn({"SERVICE_KEY": "s3rvice-key-value"})
    logger = logging.getLogger("test.secret_watch")
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    try:
        logger.info("calling with key %s", "s3rvice-key-value")
        logger.info("a harmless line")
        logger.info("extra fields count too", extra={"header": "X-Service-Key: s3rvice-key-value"})
    finally:
        logger.removeHandler(watch)
    log = tmp_path / "books.log"
    log.write_text("started\nGET /internal?key=s3rvice-key-value 401\n")
    watch.follow("books.app:create_app", {"OTHER_TOKEN": "another-token-1"}, log)
    log.write_text(log.read_text() + "token another-token-1 printed after the start\n")

    leaks = watch.leaks()
    assert [leak.split(":")[0] for leak in leaks] == [
        "test.secret_watch",
        "test.secret_watch",
        "books.app",
        "books.app",
    ]
    assert leaks[0] == "test.secret_watch: calling with key ***"
    assert "X-Service-Key: ***" in leaks[1]
    assert leaks[2] == "books.app:create_app: GET /internal?key=*** 401"
    assert leaks[3] == "books.app:create_app: token *** printed after the start"
    assert not any("s3rvice-key-value" in leak for leak in leaks)
