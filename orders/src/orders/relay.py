"""`python -m orders.relay`: delivers the orders outbox to the workers' queues."""

from __future__ import annotations

from orders.config import get_settings
from orders.lending import events
from orders.ordering.service import ORDER_CANCELLED, ORDER_CONFIRMED, ORDER_GIVEN_UP, ORDER_PLACED
from servicekit.logs import configure_logging
from servicekit.relay import OutboxRelay, Route, serve
from servicekit.tracing import configure_tracing

ROUTES = {
    ORDER_PLACED: Route("orders", "workers.stock.place_order"),
    ORDER_CANCELLED: Route("orders", "workers.stock.cancel_order"),
    ORDER_GIVEN_UP: Route("orders", "workers.stock.cancel_order"),
    ORDER_CONFIRMED: Route("notifications", "workers.notifications.order_confirmed"),
    events.BORROW_REQUESTED: Route("borrows", "workers.loans.check_out"),
    events.BORROW_GIVEN_UP: Route("borrows", "workers.loans.give_up_borrow"),
    events.COPY_FREED: Route("borrows", "workers.loans.pass_on"),
    events.HOLD_PLACED: Route("borrows", "workers.loans.fill_hold"),
    events.HOLD_CHECKED_OUT: Route("borrows", "workers.loans.hand_to_loan"),
    events.NOTICE_REQUESTED: Route("notifications", "workers.notifications.send_notice"),
    events.DIGEST_REQUESTED: Route("notifications", "workers.notifications.send_digest"),
    events.CLOSING_ANNOUNCED: Route("borrows", "workers.loans.move_due_dates"),
}


def main() -> None:
    settings = get_settings()
    configure_logging("orders-relay", settings.log_level)
    configure_tracing("orders-relay", instrument_sql=False)
    relay = OutboxRelay(
        database_url=settings.psycopg_database_url,
        redis_url=settings.redis_url,
        routes=ROUTES,
        job_id_prefix="orders-outbox-",
        poll_interval_s=settings.relay_poll_interval_s,
        retention_s=settings.relay_retention_days * 24 * 3600,
    )
    serve(relay, metrics_port=settings.relay_metrics_port)


if __name__ == "__main__":
    main()
