"""RFC 8288 `Link` headers for offset pagination, shared by every list endpoint."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode


def page_offsets(*, total: int, limit: int, offset: int) -> dict[str, int]:
    """Offsets of the `first`, `prev`, `next` and `last` pages around `offset`.

    `prev` is absent on the first page and `next` past the last item; from
    beyond the end, `prev` leads back to the last page rather than into a
    void.
    """
    if offset < total:
        # The page reached by following `next` from here, so unaligned offsets stay consistent.
        last = offset + ((total - 1 - offset) // limit) * limit
    else:
        last = ((total - 1) // limit) * limit if total > 0 else 0
    offsets = {"first": 0}
    if offset > 0:
        offsets["prev"] = max(0, min(offset - limit, last))
    if offset + limit < total:
        offsets["next"] = offset + limit
    offsets["last"] = last
    return offsets


def link_header(
    path: str,
    query: Iterable[tuple[str, str]],
    *,
    total: int,
    limit: int,
    offset: int,
) -> str:
    """`Link` header value with relative URLs that keep the other query parameters."""
    kept = [(key, value) for key, value in query if key not in ("limit", "offset")]
    links = []
    for rel, page_offset in page_offsets(total=total, limit=limit, offset=offset).items():
        params = urlencode([("limit", str(limit)), ("offset", str(page_offset)), *kept])
        links.append(f'<{path}?{params}>; rel="{rel}"')
    return ", ".join(links)
