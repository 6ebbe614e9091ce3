"""Settings of the books service, read from the environment (prefix `BOOKS_`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.database import libpq_url, sqlalchemy_url

# The predecessor's names of our variables (see servicekit.aliases); ours come first.
ALIASES = {"BOOKS_DB_DSN": "BOOKS_DATABASE_URL", "PORT": "BOOKS_PORT"}


@dataclass(frozen=True)
class CloudinaryAccount:
    """The Cloudinary credentials covers are stored with."""

    cloud_name: str
    api_key: str
    api_secret: str = field(repr=False)
    upload_prefix: str | None = None

    @classmethod
    def from_url(cls, url: str) -> CloudinaryAccount:
        """Parse `cloudinary://key:secret@cloud[?upload_prefix=...]` as the SDK does."""
        parts = urlsplit(url)
        if parts.scheme != "cloudinary" or not (
            parts.hostname and parts.username and parts.password
        ):
            raise ValueError("CLOUDINARY_URL must look like cloudinary://key:secret@cloud_name")
        prefix = parse_qs(parts.query).get("upload_prefix")
        return cls(
            cloud_name=parts.hostname,
            api_key=unquote(parts.username),
            api_secret=unquote(parts.password),
            upload_prefix=prefix[0] if prefix else None,
        )

    def sdk_options(self) -> dict[str, str]:
        options = {
            "cloud_name": self.cloud_name,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
        }
        if self.upload_prefix:
            options["upload_prefix"] = self.upload_prefix
        return options


class Settings(BaseSettings):
    # An empty variable (as `.env` files leave optional ones) means "not set". Errors name
    # the variable but never echo its value: URLs and keys carry secrets.
    model_config = SettingsConfigDict(
        env_prefix="BOOKS_",
        extra="ignore",
        env_ignore_empty=True,
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5433/books_db",
        validation_alias=AliasChoices("BOOKS_DATABASE_URL", "BOOKS_DB_DSN"),
    )
    # Where `python -m books` serves (the image listens on 0.0.0.0).
    host: str = "127.0.0.1"
    port: int = Field(
        default=8001, ge=1, le=65535, validation_alias=AliasChoices("BOOKS_PORT", "PORT")
    )
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    # Connections of the read pool (books by id and list pages), beside the pool above.
    db_read_pool_size: int = Field(default=10, ge=1)
    db_statement_timeout_s: float = Field(default=10.0, gt=0)
    db_idle_in_transaction_timeout_s: float = Field(default=30.0, gt=0)
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
    # The relay wakes on NOTIFY; this poll only catches a notification it missed.
    relay_poll_interval_s: float = Field(default=2.0, gt=0)
    # Delivered outbox rows are deleted once they are this old.
    relay_retention_days: float = Field(default=7.0, gt=0)

    # Requests per window on the public API, counted in Redis (`limits` notation), per IP
    # without a key and per key with one. Generous: the tests, the bench and `make run`
    # never reach them; a deployment sets its own.
    rate_limits_enabled: bool = True
    # Where the counts live; unset, the Redis of the queues (`redis_url`).
    rate_limit_redis_url: str | None = None
    rate_limit_anonymous: str = "5000/second"
    rate_limit_client: str = "5000/second"
    rate_limit_desk: str = "5000/second"
    rate_limit_admin: str = "20000/second"

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

    def cloudinary_account(self) -> CloudinaryAccount | None:
        """The account from CLOUDINARY_URL, else from the three CLOUDINARY_* variables."""
        if self.cloudinary_url is not None:
            return CloudinaryAccount.from_url(self.cloudinary_url.get_secret_value())
        if self.cloudinary_cloud_name and self.cloudinary_api_key and self.cloudinary_api_secret:
            return CloudinaryAccount(
                cloud_name=self.cloudinary_cloud_name,
                api_key=self.cloudinary_api_key,
                api_secret=self.cloudinary_api_secret.get_secret_value(),
                upload_prefix=self.cloudinary_upload_prefix,
            )
        return None

    @field_validator("cloudinary_url")
    @classmethod
    def _cloudinary_url_parses(cls, url: SecretStr | None) -> SecretStr | None:
        """A malformed URL stops the service at startup, not each upload with a 500."""
        if url is not None:
            CloudinaryAccount.from_url(url.get_secret_value())
        return url

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        sqlalchemy_url(url)
        return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
