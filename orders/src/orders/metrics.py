"""Business metrics of the orders service (HTTP metrics come from Litestar's Prometheus plugin)."""

from prometheus_client import Counter, Gauge, Histogram

ORDERS_CREATED = Counter(
    "orders_created_total",
    "Order placement attempts, by outcome.",
    ["outcome"],
)
STATUS_TRANSITIONS = Counter(
    "orders_status_transitions_total",
    "Orders that moved to a new status (confirmed, rejected, cancelled).",
    ["to"],
)
ORDERS_REJECTED = Counter(
    "orders_rejected_total",
    "Orders rejected by the stock reservation, by the cause of the first shortage.",
    ["cause"],
)
REVENUE = Counter(
    "orders_revenue_total",
    "Sum of the totals of confirmed orders, in the shop's currency (a cancellation later "
    'does not subtract; see orders_status_transitions_total{to="cancelled"}).',
)
STATUS_TRANSITIONS_NOT_APPLIED = Counter(
    "orders_status_transitions_not_applied_total",
    "Status changes asked for but not made: already done (a repeat), illegal, or no such order.",
    ["to", "reason"],
)
BOOKS_CLIENT_REQUESTS = Counter(
    "orders_books_client_requests_total",
    "Batch lookups against the books service, by outcome.",
    ["outcome"],
)
BOOKS_CLIENT_LATENCY = Histogram(
    "orders_books_client_request_duration_seconds",
    "Duration of batch lookups against the books service, retries included.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
# Each process has its own breaker: with several (WEB_CONCURRENCY), the worst state of
# the live ones. The library gauges hold what the last sweep, in whichever process, counted.
CIRCUIT_BREAKER_STATE = Gauge(
    "orders_circuit_breaker_state",
    "State of a circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["circuit"],
    multiprocess_mode="livemax",
)
CIRCUIT_STATES = {"closed": 0, "half-opened": 1, "opened": 2}

LIBRARY_BORROWS = Counter(
    "library_borrows_total",
    "Borrow requests, by outcome (requested, replayed, or the rule that refused them).",
    ["outcome"],
)
LIBRARY_LOANS_ACTIVATED = Counter(
    "library_loans_activated_total", "Loans that became active (a copy was checked out)."
)
LIBRARY_ACTIVATION_SECONDS = Histogram(
    "library_borrow_activation_seconds",
    "From a borrow request to its loan being active (copy checked out by a worker).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
LIBRARY_RETURNS = Counter("library_returns_total", "Loans returned, by lateness.", ["late"])
LIBRARY_BLOCK_OVERRIDES = Counter(
    "library_block_overrides_total",
    "Actions a librarian let through a member's block, by action and the block's rule.",
    ["action", "rule"],
)
LIBRARY_LOANS_LOST = Counter(
    "library_loans_lost_total",
    "Loans declared lost by the library sweep (overdue past their policy's lost_after_days).",
)
LIBRARY_LOANS_OUT = Gauge(
    "library_loans_out",
    "Active loans, as of the last library sweep.",
    multiprocess_mode="mostrecent",
)
LIBRARY_LOANS_OVERDUE = Gauge(
    "library_loans_overdue",
    "Active loans past their due date, as of the last library sweep.",
    multiprocess_mode="mostrecent",
)
LIBRARY_HOLDS_WAITING = Gauge(
    "library_holds_waiting",
    "Holds waiting for a copy, as of the last library sweep.",
    multiprocess_mode="mostrecent",
)
LIBRARY_HOLDS_READY = Gauge(
    "library_holds_ready",
    "Holds with a copy set aside, as of the last library sweep.",
    multiprocess_mode="mostrecent",
)
LIBRARY_LEDGER_AMOUNT = Counter(
    "library_ledger_amount_total",
    "Money recorded in members' ledgers, by kind: fines, lost items and processing fees "
    "charged, payments and waivers received, refunds of lost items returned (all positive, "
    "in the shop's currency).",
    ["kind"],
)
LIBRARY_CREDITS = Counter(
    "library_credits_total",
    "Payment and waiver requests, by outcome: recorded, a refusal's problem type, or what "
    "became of a repeat of an Idempotency-Key (replayed, idempotency_key_reused, ...).",
    ["kind", "outcome"],
)
