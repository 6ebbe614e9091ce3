"""Settings of the orders service, read from the environment (prefix `ORDERS_`).

`SERVICE_KEY` and `REDIS_URL` are shared by every service of the stack, so they are read
without the prefix (an `ORDERS_`-prefixed variable still wins). The predecessor's names
(`ALIASES`) are read too, when ours are not set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Annotated

import msgspec
from msgspec import Meta

from servicekit.aliases import go_bool, go_duration_seconds
from servicekit.database import libpq_url

ENV_PREFIX = "ORDERS_"
SHARED_ENV = ("SERVICE_KEY", "REDIS_URL")
# The predecessor's names of our variables (see servicekit.aliases).
ALIASES = {
    "DATABASE_URL": "ORDERS_DATABASE_URL",
    "BOOKS_SERVICE_URL": "ORDERS_BOOKS_URL",
    "ORDERS_ENABLE_IDEMPOTENCY": "ORDERS_IDEMPOTENCY_ENABLED",
    "HTTP_TIMEOUT": "ORDERS_BOOKS_TIMEOUT_S",
    "DB_TIMEOUT": "ORDERS_DB_POOL_TIMEOUT_S",
    "CIRCUIT_THRESHOLD": "ORDERS_BOOKS_BREAKER_THRESHOLD",
    "PORT": "ORDERS_PORT",
}
# It was written in Go: its timeouts were durations (`10s`; ours are seconds), its flags
# whatever Go's ParseBool reads.
_GO_VALUES: dict[str, Callable[[str], object]] = {
    "HTTP_TIMEOUT": go_duration_seconds,
    "DB_TIMEOUT": go_duration_seconds,
    "ORDERS_ENABLE_IDEMPOTENCY": go_bool,
}

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Where `python -m orders` serves (the image listens on 0.0.0.0).
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8082
    database_url: str = "postgresql://postgres@127.0.0.1:5433/orders_db"
    db_pool_size: Annotated[int, Meta(ge=1)] = 10
    db_max_overflow: Annotated[int, Meta(ge=0)] = 10
    db_pool_timeout_s: Positive = 5.0
    # The read pool (psycopg, autocommit): API keys and the hot reads of orders.
    db_read_pool_size: Annotated[int, Meta(ge=1)] = 10
    db_statement_timeout_s: Positive = 10.0
    db_idle_in_transaction_timeout_s: Positive = 30.0
    log_level: str = "INFO"

    books_url: str = "http://127.0.0.1:8001"
    # The whole books lookup, retries included, never takes longer than this.
    books_timeout_s: Positive = 2.0
    books_retry_attempts: Annotated[int, Meta(ge=1, le=10)] = 3
    books_retry_wait_initial_s: NonNegative = 0.05
    books_retry_wait_max_s: NonNegative = 0.5
    books_retry_jitter_s: NonNegative = 0.05
    books_breaker_threshold: Annotated[int, Meta(ge=1)] = 5
    books_breaker_reset_s: Positive = 30.0
    books_pool_size: Annotated[int, Meta(ge=1)] = 20

    idempotency_enabled: bool = True
    idempotency_ttl_s: Annotated[int, Meta(ge=1)] = 24 * 60 * 60
    # A claim older than this whose request never finished (a crash) may be taken over.
    idempotency_lock_timeout_s: Positive = 30.0
    idempotency_purge_interval_s: Positive = 300.0

    # A pending order or borrow is announced again after this long, then after twice as
    # long each time, and given up after that many re-drives (see orders.saga).
    saga_stall_after_s: Positive = 30.0
    saga_max_redrives: Annotated[int, Meta(ge=0, le=20)] = 5

    # Lending: what migrations 0011 and 0012 make the `adult` category's loan limit and the
    # default lending policy from; after that the tables decide (see orders.lending.policies).
    default_max_loans: Annotated[int, Meta(ge=0, le=1000)] = 5
    loan_period_days: Positive = 14.0
    loan_max_renewals: Annotated[int, Meta(ge=0)] = 2
    loan_renew_grace_days: NonNegative = 0.0
    late_fee_per_day: Decimal = Decimal("0.25")
    late_fee_cap: Decimal = Decimal("10.00")
    hold_pickup_days: Positive = 3.0
    # A waiting hold whose estimated wait is longer than this offers to sell the book
    # instead, when books has it in stock.
    buy_instead_after_days: NonNegative = 14.0
    due_soon_days: NonNegative = 2.0

    # The key workers present on the internal API; unset or empty turns that API off.
    service_key: str | None = None
    redis_url: str = "redis://127.0.0.1:6380/0"
    relay_metrics_port: Annotated[int, Meta(ge=1, le=65535)] = 9101
    # The relay wakes on NOTIFY; this poll only catches a notification it missed.
    relay_poll_interval_s: Positive = 2.0
    # Delivered outbox rows are deleted once they are this old.
    relay_retention_days: Positive = 7.0

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

    def __post_init__(self) -> None:
        for name in ("late_fee_per_day", "late_fee_cap"):
            amount: Decimal = getattr(self, name)
            if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
                raise ValueError(f"{name} must be an amount like 0.25, not {amount}")

    @property
    def psycopg_database_url(self) -> str:
        """The database URL for plain psycopg (the relay)."""
        return libpq_url(self.database_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `ORDERS_*` variables; bad values fail loudly at startup."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {
            name.lower(): environ[name] for name in SHARED_ENV if name in environ
        }
        for alias, ours in ALIASES.items():
            if environ.get(alias):
                convert = _GO_VALUES.get(alias, str)
                values[ours.removeprefix(ENV_PREFIX).lower()] = convert(environ[alias])
        values |= {
            name.removeprefix(ENV_PREFIX).lower(): value
            for name, value in environ.items()
            if name.startswith(ENV_PREFIX)
        }
        return msgspec.convert(values, cls, strict=False)


@lru_cache
def get_settings() -> Settings:
    return Settings.from_env()
