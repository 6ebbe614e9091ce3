"""Settings of the web app, read from the environment (prefix `WEB_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WEB_", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    books_url: str = "http://127.0.0.1:8001"
    orders_url: str = "http://127.0.0.1:8082"
    # Signs the session and CSRF cookies; every process of one site shares it. Required
    # to serve (`make run` generates one); the staff CLI does without.
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    # Staff accounts (`python -m web staff add NAME`): user names and argon2 hashes.
    staff_file: Path = Path(".data/web/staff.json")
    # Sent as `Authorization: Bearer …`: the shop's client key (role client) on the
    # storefront's orders calls, the staff key (role desk) on the desk's. Orders and the
    # library need them; catalog reads are public. Held here, never sent to the browser.
    client_key: SecretStr | None = None
    staff_key: SecretStr | None = None
    # Each API call, retries included, is cut off after this; a page then answers 503.
    api_timeout_s: float = Field(default=1.5, gt=0)
    # Cookies marked Secure (set behind HTTPS).
    cookie_secure: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    return Settings()
