"""Settings of the workers, read from the environment (prefix `WORKERS_`).

`REDIS_URL` and `SERVICE_KEY` are shared with the rest of the stack and keep their plain
names. Cloudinary is configured the way its SDK reads it: `CLOUDINARY_URL`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Listened to in this order: a placed order waits on stock, a mail or a cleanup can wait.
QUEUES = ("orders", "borrows", "notifications", "maintenance")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORKERS_", extra="ignore")

    books_url: str = "http://127.0.0.1:8001"
    orders_url: str = "http://127.0.0.1:8082"
    redis_url: str = Field(
        default="redis://127.0.0.1:6380/0",
        validation_alias=AliasChoices("REDIS_URL", "WORKERS_REDIS_URL"),
    )
    service_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SERVICE_KEY", "WORKERS_SERVICE_KEY")
    )
    queues: Annotated[tuple[str, ...], NoDecode] = QUEUES
    # Worker processes on each queue, each with its own Redis connection and HTTP pools.
    processes: int = Field(default=1, ge=1)
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    # Loopback unless told: images set 0.0.0.0 so that Prometheus can scrape the container.
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"

    # A job's HTTP call gives up after these; the job then fails and RQ retries it later.
    http_connect_timeout_s: float = Field(default=2.0, gt=0)
    http_timeout_s: float = Field(default=10.0, gt=0)
    cloudinary_timeout_s: float = Field(default=20.0, gt=0)

    # Notification mail: `smtp://host:port` (`smtps://` for TLS, user:password@ if needed).
    smtp_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SMTP_URL", "WORKERS_SMTP_URL")
    )
    mail_from: str = "Bookstore library <library@bookstore.local>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # How often the library sweep runs (expired holds, due and overdue notices).
    library_sweep_interval_s: int = Field(default=300, ge=1)
    # How often the reconciler asks orders to settle pending orders and borrows whose job
    # is overdue (orders decides which are; see orders.saga).
    reconcile_interval_s: int = Field(default=10, ge=1)

    # Bound how soon a job whose worker died runs again (see workers.worker): the pool's
    # sweep of the registries, and the life of a running job's heartbeat.
    maintenance_interval_s: int = Field(default=1, ge=1)
    heartbeat_ttl_s: int = Field(default=5, ge=3)
    worker_ttl_s: int = Field(default=30, ge=16)

    @field_validator("service_key", "smtp_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
