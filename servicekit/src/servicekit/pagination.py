"""RFC 8288 `Link` headers for offset pagination, shared by every list endpoint, and the
cursors of keyset pagination."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
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


# Keyset pagination: the position after the last item of a page, as an opaque token.
_CURSOR = struct.Struct(">qq")  # microseconds since the epoch, id
_CHECK_BYTES = 4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, item_id: int) -> str:
    """The cursor of a list ordered by (created_at, id): what comes after this item.

    It carries no secret and grants nothing (it is a position any client may reach by
    paging); its checksum only tells a cursor cut or edited by hand from one this API
    gave, so that the client hears so rather than getting some other page.
    """
    position = _CURSOR.pack((created_at - _EPOCH) // timedelta(microseconds=1), item_id)
    check = hashlib.blake2b(position, digest_size=_CHECK_BYTES).digest()
    return base64.urlsafe_b64encode(position + check).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(created_at, id) of a cursor from `encode_cursor`; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("not a cursor this API gave (it is not base64url)") from error
    position, check = raw[: _CURSOR.size], raw[_CURSOR.size :]
    # Only the spelling this API gives: base64 would also take other values of the spare
    # bits of the last character.
    canonical = base64.urlsafe_b64encode(raw).decode().rstrip("=") == cursor
    expected = hashlib.blake2b(position, digest_size=_CHECK_BYTES).digest()
    if not canonical or len(position) != _CURSOR.size or check != expected:
        raise ValueError("not a cursor this API gave (use the `next` link as it came)")
    micros, item_id = _CURSOR.unpack(position)
    try:
        created_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError as error:
        raise ValueError("not a cursor this API gave (its position is out of range)") from error
    return created_at, item_id


def cursor_link_header(
    path: str, query: Iterable[tuple[str, str]], *, limit: int, after: str | None
) -> str:
    """`Link` header of a page reached by cursor: `first`, and `next` (the cursor `after`)
    unless this page is the last."""
    kept = [(key, value) for key, value in query if key not in ("limit", "offset", "after")]
    # An empty `after` is the start of the list, walked by cursor.
    links = [f'<{path}?{urlencode([("limit", str(limit)), ("after", ""), *kept])}>; rel="first"']
    if after is not None:
        params = urlencode([("limit", str(limit)), ("after", after), *kept])
        links.append(f'<{path}?{params}>; rel="next"')
    return ", ".join(links)
