"""Settings of the books service, read from the environment (prefix `BOOKS_`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.database import libpq_url, sqlalchemy_url


class Settings(BaseSettings):
    # An empty variable (as `.env` files leave optional ones) means "not set".
    model_config = SettingsConfigDict(env_prefix="BOOKS_", extra="ignore", env_ignore_empty=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5433/books_db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"
    # Shared by the whole stack; without it the internal API refuses every call.
    service_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SERVICE_KEY", "BOOKS_SERVICE_KEY")
    )

    # The outbox relay (`python -m books.relay`) hands side effects to RQ on this Redis.
    redis_url: str = Field(
        default="redis://127.0.0.1:6380/0",
        validation_alias=AliasChoices("REDIS_URL", "BOOKS_REDIS_URL"),
    )
    relay_metrics_port: int = Field(default=9103, ge=1, le=65535)

    cover_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    cover_folder: str = "bookstore/covers"
    # The Cloudinary variables keep the names the Cloudinary SDK and the seed use.
    cloudinary_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDINARY_URL", "BOOKS_CLOUDINARY_URL")
    )
    cloudinary_cloud_name: str | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDINARY_CLOUD_NAME")
    )
    cloudinary_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDINARY_API_KEY")
    )
    cloudinary_api_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDINARY_API_SECRET")
    )
    cloudinary_upload_prefix: str | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDINARY_UPLOAD_PREFIX")
    )
    upload_preset: str | None = Field(default=None, validation_alias=AliasChoices("UPLOAD_PRESET"))
    cloudinary_timeout_s: float = Field(default=20.0, gt=0)

    @property
    def psycopg_database_url(self) -> str:
        """The database URL for plain psycopg (the relay, scripts)."""
        return libpq_url(self.database_url)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        sqlalchemy_url(url)
        return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
