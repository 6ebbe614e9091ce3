"""`python -m books.relay`: delivers the books outbox to the workers' queues."""

from __future__ import annotations

from books.config import get_settings
from servicekit.logs import configure_logging
from servicekit.relay import OutboxRelay, Route, serve
from servicekit.tracing import configure_tracing

ROUTES = {
    "cover.discarded": Route("maintenance", "workers.covers.delete_image"),
}


def main() -> None:
    settings = get_settings()
    configure_logging("books-relay", settings.log_level)
    configure_tracing("books-relay", instrument_sql=False)
    relay = OutboxRelay(
        database_url=settings.psycopg_database_url,
        redis_url=settings.redis_url,
        routes=ROUTES,
        job_id_prefix="books-outbox-",
        poll_interval_s=settings.relay_poll_interval_s,
        retention_s=settings.relay_retention_days * 24 * 3600,
    )
    serve(relay, metrics_port=settings.relay_metrics_port)


if __name__ == "__main__":
    main()
