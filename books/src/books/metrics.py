"""Business metrics of the books service (the HTTP metrics are in `books.http_metrics`)."""

from prometheus_client import Counter

BOOKS_CREATED = Counter("books_created_total", "Books added to the catalog.")
BOOKS_DELETED = Counter("books_deleted_total", "Books soft-deleted from the catalog.")
COVER_UPLOADS = Counter(
    "books_cover_uploads_total",
    "Cover uploads to the image service, by outcome.",
    ["outcome"],
)
STOCK_RESERVATIONS = Counter(
    "books_stock_reservations_total",
    "Stock reservation requests, by outcome (reserved, rejected, replayed).",
    ["outcome"],
)
STOCK_RELEASES = Counter(
    "books_stock_releases_total",
    "Stock release requests, by outcome (released, replayed, not_reserved).",
    ["outcome"],
)
COPY_MOVEMENTS = Counter(
    "books_copy_movements_total",
    "Calls of the internal copies API, by kind (checkout, checkin, transfer) and outcome (the"
    " status answered, or replayed when the reference had already done it).",
    ["kind", "outcome"],
)
